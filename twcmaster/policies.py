"""The policy names, one home for them: the policy engine picks one (``control/policy.py``),
a user may choose one by hand (settings, MQTT, HTTP), and every output shows it
(``TWC/all/currentPolicy``, ``/api/getStatus``). Users' automations match these exact
strings, so they never change.

``POLICIES`` are TWCManager's four, the ones its rule order picks from. twcmaster adds one
mode a user chooses by hand (``FORCEABLE_POLICIES``): **Min + Green Energy** (evcc's "Min+PV"):
every car that wants current gets its floor (minAmpsPerTWC) from whatever source, and
anything above the floor comes from the solar surplus (``control/mingreen.py``).
"""

POLICY_CHARGE_NOW = "Charge Now"
POLICY_SCHEDULED = "Scheduled Charging"
POLICY_GREEN = "Track Green Energy"
POLICY_NON_SCHEDULED = "Non Scheduled Charging"
POLICIES = (POLICY_CHARGE_NOW, POLICY_SCHEDULED, POLICY_GREEN, POLICY_NON_SCHEDULED)

#: The budget's policy name when the user's rules (config.json's policy section) have not
#: matched yet (TWCManager had no policy then); the user's rules name the others.
POLICY_NO_MATCH = "No Matching Policy"

POLICY_MIN_GREEN = "Min + Green Energy"
#: The policies a user may force over the rules: TWCManager's four and twcmaster's mode.
FORCEABLE_POLICIES = (*POLICIES, POLICY_MIN_GREEN)
#: Other names a user may type for a policy (any letter case): evcc's for Min + Green Energy.
POLICY_NAME_ALIASES = {"min+pv": POLICY_MIN_GREEN, "minpv": POLICY_MIN_GREEN}


def canonical_policy(name: object) -> str | None:
    """The policy ``name`` means (any letter case, or an alias), or None when none."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    for policy in FORCEABLE_POLICIES:
        if key == policy.lower():
            return policy
    return POLICY_NAME_ALIASES.get(key.replace(" ", ""))
