"""A small RTSP server for the camera tests: JPEG files in a folder, looped, served as MJPEG.

Runs under the system Python (``/usr/bin/python3``), which has GStreamer's introspection
bindings from Debian (``python3-gst-1.0``, ``gir1.2-gst-rtsp-server-1.0``)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --frames DIR [--fps 5] [--path /cam]

``DIR`` holds ``frame00000.jpg``, ``frame00001.jpg``... The server prints ``ready`` on its own
line once it listens on 127.0.0.1, and serves until it is terminated (SIGTERM or SIGINT).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--frames", required=True, help="folder of frame%%05d.jpg files")
    p.add_argument("--fps", type=int, default=5)
    p.add_argument("--path", default="/cam")
    args = p.parse_args()

    Gst.init(None)
    location = str(Path(args.frames).resolve() / "frame%05d.jpg")
    launch = (
        f"( multifilesrc location={location} loop=true "
        f"caps=image/jpeg,framerate={args.fps}/1 "
        "! jpegdec ! videoconvert ! video/x-raw,format=I420 ! jpegenc "
        "! rtpjpegpay name=pay0 pt=26 )"
    )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
