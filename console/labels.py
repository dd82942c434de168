"""Names people read for the store's codes: event kinds, alert states, outcomes, roles, audit
actions, commands. Each is a msgid of the catalogs (marked with ``N_`` for extraction); the
templates translate it (``_(kind_label(k))``). A code with no entry is shown as it is."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 (the gettext convention for "mark only")
    return message


KINDS = {
    "panic": N_("Panic"),
    "duress": N_("Duress"),
    "silent_panic": N_("Silent panic"),
    "fire": N_("Fire"),
    "smoke": N_("Smoke"),
    "heat": N_("Heat"),
    "gas": N_("Gas"),
    "tamper": N_("Tamper"),
    "sensor_tamper": N_("Sensor tamper"),
    "door": N_("Door opened"),
    "supervision": N_("Sensor not reporting"),
    "rf_supervision": N_("Wireless sensor not reporting"),
    "low_battery": N_("Low battery"),
    "system_low_battery": N_("Hub battery low"),
    "bus_fault": N_("Sensor bus fault"),
    "camera_offline": N_("Camera offline"),
    "camera_tamper": N_("Camera tampered"),
    "silenced": N_("Siren silenced"),
    "storage_fault": N_("Storage fault"),
    "uplink": N_("Communication trouble"),
    "communication": N_("Communication trouble"),
    "comm_trouble": N_("Communication trouble"),
    "alarm_backlog": N_("Alarms not delivered"),
    "clock_unsynced": N_("Clock not synchronised"),
    "input_fault": N_("Input fault"),
    "person": N_("Person detected"),
    "test": N_("Test report"),
    "telemetry": N_("Telemetry"),
}

STATES = {
    "new": N_("New"),
    "acknowledged": N_("Acknowledged"),
    "closed": N_("Closed"),
}

OUTCOMES = {
    "real": N_("Real"),
    "false_alarm": N_("False alarm"),
    "test": N_("Test"),
    "other": N_("Other"),
    "restored": N_("Restored"),
}

PRIORITIES = {
    0: N_("Alarm"),
    1: N_("Trouble"),
    2: N_("Detection"),
    3: N_("Telemetry"),
}

ROLES = {
    "viewer": N_("Viewer"),
    "operator": N_("Operator"),
    "admin": N_("Administrator"),
}

COMMANDS = {
    "silence": N_("Silence the siren"),
    "ping": N_("Ping"),
    "snapshot": N_("Picture again"),
}

ACTIONS = {
    "opened": N_("opened"),
    "joined": N_("event joined"),
    "restored": N_("restored"),
    "acknowledged": N_("acknowledged"),
    "closed": N_("closed"),
    "command_sent": N_("command sent"),
    "command_failed": N_("command not sent"),
    "command_result": N_("command answered"),
    "escalated": N_("escalated"),
    "escalation_stopped": N_("escalation stopped"),
    "notify_attempt": N_("sending a notification"),
    "notify_sent": N_("notification sent"),
    "notify_failed": N_("notification not delivered (retrying)"),
    "login": N_("logged in"),
    "login_failed": N_("wrong password"),
    "login_refused": N_("login refused (locked)"),
    "account_locked": N_("account locked"),
    "logout": N_("logged out"),
    "user_added": N_("user added"),
    "user_removed": N_("user removed"),
    "user_unlocked": N_("account unlocked"),
    "password_changed": N_("password changed"),
    "token_added": N_("API token added"),
    "token_removed": N_("API token removed"),
}

HUB_STATUS = {
    "online": N_("online"),
    "offline": N_("offline"),
    "unknown": N_("status unknown"),
    "never": N_("never seen"),
}


def kind_label(kind: str) -> str:
    return KINDS.get(kind, kind)


def state_label(state: str) -> str:
    return STATES.get(state, state)


def outcome_label(outcome: str | None) -> str:
    return OUTCOMES.get(outcome or "", outcome or "")


def priority_label(priority: int) -> str:
    return PRIORITIES.get(priority, str(priority))


def role_label(role: str) -> str:
    return ROLES.get(role, role)


def command_label(name: str) -> str:
    return COMMANDS.get(name, name)


def action_label(action: str) -> str:
    return ACTIONS.get(action, action)


def hub_status_label(status: str) -> str:
    return HUB_STATUS.get(status, status)


LABELS = {
    "kind_label": kind_label,
    "state_label": state_label,
    "outcome_label": outcome_label,
    "priority_label": priority_label,
    "role_label": role_label,
    "command_label": command_label,
    "action_label": action_label,
    "hub_status_label": hub_status_label,
}

DONE = {
    "acknowledged": N_("Alert acknowledged."),
    "closed": N_("Alert closed."),
    "sent": N_("Command sent: the hub's answer shows below when it comes."),
}

PROBLEMS = {
    "alert": N_("This cannot be done to the alert"),
    "send": N_("The command could not be sent to the hub"),
    "input": N_("Check what was entered"),
    "login": N_("Wrong user name or password."),
    "locked": N_("Too many wrong passwords: this account is locked for a while."),
    "user": N_("The user cannot be changed"),
}
