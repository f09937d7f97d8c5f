"""Names users read for domain codes and menu buttons, as lazy gettext strings.

Labels are lazy (`__`) so one definition serves every locale: `str(label)` or a
comparison in a filter resolves it in the locale of the current update.
"""

from __future__ import annotations

from aiogram.utils.i18n import lazy_gettext as __

from models.enums import LedgerKind

# Main-menu buttons (reply keyboard). Handlers match on these in the user's locale.
BTN_LINK = __("Link KPM account")
BTN_STATUS = __("Aid status")
BTN_ERASE = __("Delete my data")
BTN_HELP = __("Help")
BTN_LANGUAGE = __("Language")
BTN_SHARE_PHONE = __("Share my phone number")
BTN_ACTIVATION_CODE = __("I have an activation code")
BTN_CANCEL = __("Cancel")
BTN_SHOPPING_CODE = __("Shopping code")
BTN_NEARBY = __("Nearest e-Warong")
BTN_SHOPPING_LOCK = __("Shopping lock")
BTN_SHARE_LOCATION = __("Share my location")
BTN_NAPZA = __("Napza help")
BTN_MY_TICKETS = __("My tickets")
# e-Warong agents
BTN_NEW_REDEMPTION = __("New transaction")
BTN_TODAY = __("Today's transactions")
BTN_EXPORT = __("Export CSV")
# admins
BTN_BROADCAST = __("Broadcast")
BTN_STATS = __("Statistics")
BTN_INVITE = __("Invite agent/partner")
BTN_PENDING_REFERRALS = __("Pending referrals")
BTN_DISPUTES = __("Transaction disputes")

FOOD_NAMES = {
    "beras": __("Rice"),
    "telur": __("Eggs"),
    "daging_ayam": __("Chicken"),
    "daging_sapi": __("Beef"),
    "ikan": __("Fish"),
    "tahu": __("Tofu"),
    "tempe": __("Tempeh"),
    "kacang": __("Beans and nuts"),
    "sayur": __("Vegetables"),
    "buah": __("Fruit"),
    "total": __("Groceries (total)"),
}

COMPONENT_NAMES = {
    "ibu_hamil": __("Pregnant or postpartum mother"),
    "anak_usia_dini": __("Early-childhood child (0–6)"),
    "anak_sd": __("Primary-school child (SD)"),
    "anak_smp": __("Junior-high child (SMP)"),
    "anak_sma": __("Senior-high child (SMA)"),
    "disabilitas_berat": __("Person with severe disability"),
    "lansia": __("Elderly person (60+)"),
}

STATUS_NAMES = {
    "ditetapkan": __("approved"),
    "diproses": __("being processed at the bank"),
    "disalurkan": __("credited to your KKS account"),
    "gagal": __("failed / returned"),
}

LEDGER_KIND_NAMES = {
    LedgerKind.CREDIT: __("BPNT credit"),
    LedgerKind.CREDIT_REVERSAL: __("Credit reversed"),
    LedgerKind.REDEMPTION: __("Purchase at e-Warong"),
    LedgerKind.REDEMPTION_REVERSAL: __("Purchase reversed"),
}

LANGUAGE_NAMES = {"id": "Bahasa Indonesia", "en": "English"}

FOR_WHOM_NAMES = {"self": __("Myself"), "family": __("A family member")}
AGE_GROUP_NAMES = {
    "under_18": __("Under 18"),
    "18_25": __("18–25"),
    "26_40": __("26–40"),
    "over_40": __("Over 40"),
}
HELP_TYPE_NAMES = {
    "konseling": __("Counselling (konseling)"),
    "rawat_jalan": __("Outpatient care (rawat jalan)"),
    "rawat_inap": __("Inpatient care (rawat inap)"),
    "informasi": __("Information"),
}
URGENCY_NAMES = {True: __("Urgent (today)"), False: __("Not urgent")}
OUTCOME_NAMES = {
    "dirujuk": __("Referred (dirujuk)"),
    "rawat_jalan": __("Outpatient care (rawat jalan)"),
    "rawat_inap": __("Inpatient care (rawat inap)"),
    "tidak_dapat_dihubungi": __("Could not be reached"),
    "selesai": __("Completed (selesai)"),
    # Set by retention on a case nobody touched for NAPZA_RETENTION_DAYS; not a button.
    "tidak_ada_aktivitas": __("Closed for lack of activity"),
}
REQUEST_STATUS_NAMES = {
    "routing": __("waiting for a partner organisation"),
    "accepted": __("accepted"),
    "escalated": __("passed to an officer"),
    "closed": __("closed"),
    "cancelled": __("cancelled"),
}

AUDIENCE_NAMES = {
    "kpm": __("All KPM families"),
    "pkh": __("PKH families"),
    "bpnt": __("BPNT/Sembako families"),
    "agents": __("e-Warong agents"),
    "partners": __("Partner organisations"),
}
BROADCAST_STATUS_NAMES = {
    "scheduled": __("scheduled"),
    "running": __("sending"),
    "paused": __("paused"),
    "cancelled": __("cancelled"),
    "done": __("finished"),
}
