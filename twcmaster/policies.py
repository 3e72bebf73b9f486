"""TWCManager's policy names, one home for them: the policy engine picks one
(``control/policy.py``), a user may choose one by hand (settings, MQTT, HTTP), and every output
shows it (``TWC/all/currentPolicy``, ``/api/getStatus``). Users' automations match these exact
strings, so they never change."""

POLICY_CHARGE_NOW = "Charge Now"
POLICY_SCHEDULED = "Scheduled Charging"
POLICY_GREEN = "Track Green Energy"
POLICY_NON_SCHEDULED = "Non Scheduled Charging"
POLICIES = (POLICY_CHARGE_NOW, POLICY_SCHEDULED, POLICY_GREEN, POLICY_NON_SCHEDULED)
