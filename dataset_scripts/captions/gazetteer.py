"""Country and continent names as data, so the verifier can tell a wrong place from an unknown one.

A caption that names a place the fact sheet does not know is only *unverifiable*; it is *contradicted*
when it names a country (or continent, or broad region) that the sample is not in. That needs the list of
countries below: ISO 3166-1 alpha-2 code, the common English name (plus other frequent spellings) and
the continent (AF, AN, AS, EU, NA, OC, SA). Demonyms cover the adjectives captions actually use.
"""

from __future__ import annotations

from types import MappingProxyType

_COUNTRIES = """
AF Afghanistan AS|AL Albania EU|DZ Algeria AF|AD Andorra EU|AO Angola AF|AR Argentina SA|AM Armenia AS|
AU Australia OC|AT Austria EU|AZ Azerbaijan AS|BS Bahamas NA|BH Bahrain AS|BD Bangladesh AS|
BY Belarus EU|BE Belgium EU|BZ Belize NA|BJ Benin AF|BT Bhutan AS|BO Bolivia SA|BA Bosnia and Herzegovina EU|
BW Botswana AF|BR Brazil SA|BN Brunei AS|BG Bulgaria EU|BF Burkina Faso AF|BI Burundi AF|KH Cambodia AS|
CM Cameroon AF|CA Canada NA|CF Central African Republic AF|TD Chad AF|CL Chile SA|CN China AS|
CO Colombia SA|CG Congo AF|CD Democratic Republic of the Congo AF|CR Costa Rica NA|CI Ivory Coast AF|
HR Croatia EU|CU Cuba NA|CY Cyprus EU|CZ Czechia EU|DK Denmark EU|DJ Djibouti AF|DO Dominican Republic NA|
EC Ecuador SA|EG Egypt AF|SV El Salvador NA|GQ Equatorial Guinea AF|ER Eritrea AF|EE Estonia EU|
SZ Eswatini AF|ET Ethiopia AF|FJ Fiji OC|FI Finland EU|FR France EU|GA Gabon AF|GM Gambia AF|GE Georgia AS|
DE Germany EU|GH Ghana AF|GR Greece EU|GL Greenland NA|GT Guatemala NA|GN Guinea AF|GW Guinea-Bissau AF|
GY Guyana SA|HT Haiti NA|HN Honduras NA|HU Hungary EU|IS Iceland EU|IN India AS|ID Indonesia AS|IR Iran AS|
IQ Iraq AS|IE Ireland EU|IL Israel AS|IT Italy EU|JM Jamaica NA|JP Japan AS|JO Jordan AS|KZ Kazakhstan AS|
KE Kenya AF|KW Kuwait AS|KG Kyrgyzstan AS|LA Laos AS|LV Latvia EU|LB Lebanon AS|LS Lesotho AF|LR Liberia AF|
LY Libya AF|LT Lithuania EU|LU Luxembourg EU|MG Madagascar AF|MW Malawi AF|MY Malaysia AS|ML Mali AF|
MT Malta EU|MR Mauritania AF|MX Mexico NA|MD Moldova EU|MN Mongolia AS|ME Montenegro EU|MA Morocco AF|
MZ Mozambique AF|MM Myanmar AS|NA Namibia AF|NP Nepal AS|NL Netherlands EU|NZ New Zealand OC|
NI Nicaragua NA|NE Niger AF|NG Nigeria AF|KP North Korea AS|MK North Macedonia EU|NO Norway EU|OM Oman AS|
PK Pakistan AS|PA Panama NA|PG Papua New Guinea OC|PY Paraguay SA|PE Peru SA|PH Philippines AS|PL Poland EU|
PT Portugal EU|QA Qatar AS|RO Romania EU|RU Russia EU|RW Rwanda AF|SA Saudi Arabia AS|SN Senegal AF|
RS Serbia EU|SL Sierra Leone AF|SG Singapore AS|SK Slovakia EU|SI Slovenia EU|SB Solomon Islands OC|
SO Somalia AF|ZA South Africa AF|KR South Korea AS|SS South Sudan AF|ES Spain EU|LK Sri Lanka AS|SD Sudan AF|
SR Suriname SA|SE Sweden EU|CH Switzerland EU|SY Syria AS|TW Taiwan AS|TJ Tajikistan AS|TZ Tanzania AF|
TH Thailand AS|TL Timor-Leste AS|TG Togo AF|TN Tunisia AF|TR Turkey AS|TM Turkmenistan AS|UG Uganda AF|
UA Ukraine EU|AE United Arab Emirates AS|GB United Kingdom EU|US United States NA|UY Uruguay SA|
UZ Uzbekistan AS|VE Venezuela SA|VN Vietnam AS|YE Yemen AS|ZM Zambia AF|ZW Zimbabwe AF
"""

#: ISO alpha-2 -> (common name, continent code)
COUNTRIES = MappingProxyType(
    {
        entry.split()[0]: (" ".join(entry.split()[1:-1]), entry.split()[-1])
        for entry in (e.strip() for e in _COUNTRIES.replace("\n", "").split("|"))
        if entry
    }
)

#: other names and adjectives -> ISO alpha-2
_ALIASES = {
    "USA": "US", "United States of America": "US", "America": "US", "American": "US", "UK": "GB",
    "Britain": "GB", "Great Britain": "GB", "England": "GB", "Scotland": "GB", "Wales": "GB", "British": "GB",
    "Holland": "NL", "Dutch": "NL", "Czech Republic": "CZ", "Czech": "CZ", "Côte d'Ivoire": "CI",
    "Burma": "MM", "Persia": "IR", "Brazilian": "BR", "Chilean": "CL", "Danish": "DK", "Tanzanian": "TZ",
    "Canadian": "CA", "Argentine": "AR", "Argentinian": "AR", "Peruvian": "PE", "Bolivian": "BO",
    "Colombian": "CO", "Mexican": "MX", "Kenyan": "KE", "Ugandan": "UG", "Ethiopian": "ET",
    "Nigerian": "NG", "Egyptian": "EG", "Moroccan": "MA", "South African": "ZA", "Australian": "AU",
    "Indian": "IN", "Chinese": "CN", "Japanese": "JP", "Russian": "RU", "German": "DE", "French": "FR",
    "Spanish": "ES", "Italian": "IT", "Portuguese": "PT", "Norwegian": "NO", "Swedish": "SE",
    "Finnish": "FI", "Icelandic": "IS", "Polish": "PL", "Irish": "IE", "Greek": "GR", "Turkish": "TR",
    "Indonesian": "ID", "Vietnamese": "VN", "Thai": "TH", "Mongolian": "MN", "Kazakh": "KZ",
    "Greenlandic": "GL", "Icelander": "IS", "Swiss": "CH", "Austrian": "AT", "Belgian": "BE",
    "Zambian": "ZM", "Malawian": "MW", "Mozambican": "MZ", "Rwandan": "RW", "Congolese": "CD",
    "Venezuelan": "VE", "Ecuadorian": "EC", "Uruguayan": "UY", "Paraguayan": "PY", "New Zealand's": "NZ",
}  # fmt: skip
ALIASES = MappingProxyType(_ALIASES)

CONTINENT_NAMES = MappingProxyType(
    {
        "AF": ("Africa", "African", "East Africa", "East African", "West Africa", "Sub-Saharan Africa"),
        "AN": ("Antarctica", "Antarctic"),
        "AS": ("Asia", "Asian", "Southeast Asia", "Central Asia", "Middle East"),
        "EU": ("Europe", "European", "Northern Europe", "Western Europe", "Scandinavia", "Scandinavian"),
        "NA": ("North America", "North American", "Central America", "Caribbean"),
        "OC": ("Oceania", "Pacific Islands"),
        "SA": (
            "South America",
            "South American",
            "Latin America",
            "the Andes",
            "Andean",
            "Amazonia",
            "Amazon",
        ),
    }
)
#: broad regions that are narrower than a continent: name -> ISO codes they can be in
SUBREGIONS = MappingProxyType(
    {
        "Scandinavia": frozenset({"DK", "NO", "SE"}), "Scandinavian": frozenset({"DK", "NO", "SE"}),
        "East Africa": frozenset({"TZ", "KE", "UG", "RW", "BI", "ET", "SO", "DJ", "ER", "SS", "MZ", "MW", "ZM"}),
        "East African": frozenset({"TZ", "KE", "UG", "RW", "BI", "ET", "SO", "DJ", "ER", "SS", "MZ", "MW", "ZM"}),
        "West Africa": frozenset({"SN", "GM", "GW", "GN", "SL", "LR", "CI", "GH", "TG", "BJ", "NG", "NE", "ML", "BF", "MR"}),
        "Central America": frozenset({"BZ", "GT", "SV", "HN", "NI", "CR", "PA"}),
        "Caribbean": frozenset({"CU", "HT", "DO", "JM", "BS"}),
        "Middle East": frozenset({"SA", "AE", "OM", "YE", "QA", "KW", "BH", "IQ", "IR", "SY", "JO", "LB", "IL", "TR"}),
        "Southeast Asia": frozenset({"TH", "VN", "LA", "KH", "MM", "MY", "SG", "ID", "PH", "BN", "TL"}),
        "Central Asia": frozenset({"KZ", "KG", "TJ", "TM", "UZ"}),
        "the Andes": frozenset({"CL", "AR", "PE", "BO", "EC", "CO", "VE"}),
        "Andean": frozenset({"CL", "AR", "PE", "BO", "EC", "CO", "VE"}),
        "Amazonia": frozenset({"BR", "PE", "CO", "BO", "EC", "VE", "GY", "SR"}),
        "Amazon": frozenset({"BR", "PE", "CO", "BO", "EC", "VE", "GY", "SR"}),
        "Northern Europe": frozenset({"DK", "NO", "SE", "FI", "IS", "EE", "LV", "LT", "GB", "IE"}),
        "Western Europe": frozenset({"FR", "BE", "NL", "LU", "DE", "CH", "AT", "GB", "IE", "PT", "ES", "DK"}),
        "Latin America": frozenset({"MX", "BZ", "GT", "SV", "HN", "NI", "CR", "PA", "CU", "HT", "DO", "CO",
                                    "VE", "EC", "PE", "BO", "BR", "PY", "UY", "AR", "CL", "GY", "SR"}),
    }
)  # fmt: skip


def place_names() -> dict[str, tuple[str, str]]:
    """Every known name -> (kind, value): kind ``country`` (ISO code), ``continent`` (code) or ``subregion``."""
    names: dict[str, tuple[str, str]] = {}
    for code, (name, _) in COUNTRIES.items():
        names[name] = ("country", code)
    for alias, code in ALIASES.items():
        names[alias] = ("country", code)
    for code, words in CONTINENT_NAMES.items():
        for w in words:
            names[w] = ("subregion", w) if w in SUBREGIONS else ("continent", code)
    return names


def continent_of(country_code: str | None) -> str | None:
    """Continent code of an ISO alpha-2 country code, ``None`` when the country is not in the table."""
    if not country_code:
        return None
    entry = COUNTRIES.get(country_code.upper())
    return entry[1] if entry else None
