"""The police console: web pages, the /api/v1 JSON API and their users (docs/console.md)."""
