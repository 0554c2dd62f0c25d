"""The caption vocabulary as data: which words claim which land cover, terrain, state or place.

The template captioner writes with these words and the verifier reads with them, so a word the captioner
may use is always a word the verifier can check. Everything here is plain data plus two tiny helpers.

Land cover is reasoned about in *concepts*, a common vocabulary over Dynamic World and ESA WorldCover
(the registry's class names map onto it below). Caption words claim *groups* of concepts: "grassland"
claims grass + shrub + moss because the 10 m products confuse those classes with one another, and a
caption that says "grassland" over Dynamic World "shrub and scrub" is not a hallucination.
"""

from __future__ import annotations

import re
from types import MappingProxyType

#: registry class name (Dynamic World or ESA WorldCover, see ``modeling_geomeld.modalities``) -> concept
CLASS_TO_CONCEPT = MappingProxyType(
    {
        # Dynamic World
        "water": "water",
        "trees": "trees",
        "grass": "grass",
        "flooded vegetation": "flooded_vegetation",
        "crops": "crops",
        "shrub and scrub": "shrub",
        "built": "built",
        "bare": "bare",
        "snow and ice": "snow",
        # ESA WorldCover
        "tree cover": "trees",
        "shrubland": "shrub",
        "grassland": "grass",
        "cropland": "crops",
        "built-up": "built",
        "bare / sparse vegetation": "bare",
        "permanent water bodies": "water",
        "herbaceous wetland": "flooded_vegetation",
        "mangroves": "mangroves",
        "moss and lichen": "moss",
    }
)
CONCEPTS: tuple[str, ...] = (
    "water", "trees", "grass", "shrub", "flooded_vegetation", "crops", "built", "bare", "snow",
    "mangroves", "moss",
)  # fmt: skip
VEGETATION_CONCEPTS = frozenset(
    {"trees", "grass", "shrub", "flooded_vegetation", "crops", "mangroves", "moss"}
)

#: claim group -> concepts whose shares add up to the group's share
GROUPS = MappingProxyType(
    {
        "water": frozenset({"water"}),
        "trees": frozenset({"trees", "mangroves"}),
        "open_vegetation": frozenset({"grass", "shrub", "moss"}),
        "wetland": frozenset({"flooded_vegetation", "mangroves"}),
        "crops": frozenset({"crops"}),
        "built": frozenset({"built"}),
        "bare": frozenset({"bare"}),
        "snow": frozenset({"snow"}),
        "vegetation": VEGETATION_CONCEPTS,
        "unvegetated": frozenset({"bare", "built"}),
    }
)
#: groups that are unions of other groups: never a competitor when asking which class is the largest
AGGREGATE_GROUPS = frozenset({"vegetation", "unvegetated"})

#: caption words (regular expressions, matched case-insensitively on word boundaries) -> claim group.
#: Order matters only for overlaps: longer phrases are listed before their parts.
GROUP_WORDS: tuple[tuple[str, str], ...] = (
    # what the spectral indices measure without telling soil from roofs (NDBI is positive on both)
    (
        r"unvegetated(?: ground| land)?|non-vegetated(?: ground| land)?|bare or built-up (?:ground|land)|"
        r"built-up or bare (?:ground|land)",
        "unvegetated",
    ),
    (r"flooded vegetation|wetlands?|marsh(?:es|land)?|swamps?|bogs?|mangroves?|fens?", "wetland"),
    (
        r"open water|water(?:s|body|bodies)?|lakes?|rivers?|streams?|ponds?|lagoons?|estuar(?:y|ies)|sea|ocean|"
        r"bays?|inlets?|reservoirs?|channels?|creeks?",
        "water",
    ),
    (r"forest(?:s|ed)?|woodlands?|woods|trees?|tree cover|groves?|jungle|rainforest|canopy", "trees"),
    (
        r"grass(?:land|lands|es)?|meadows?|pastures?|rangeland|savann?ah?|scrub(?:land)?|shrubs?|shrubland|"
        r"bush(?:land)?|heath(?:land)?",
        "open_vegetation",
    ),
    (r"crop(?:s|land|lands)?|farmland|farms?|fields?|agricultur(?:e|al)|arable|plots?|paddies", "crops"),
    (
        r"built-up|built up|built|urban|town|towns|city|cities|buildings?|settlements?|houses?|villages?|"
        r"suburbs?|suburban|residential|roads?|streets?|farmsteads?|neighbou?rhoods?",
        "built",
    ),
    (
        r"bare(?: ground| soil| earth| land)?|sand(?:y|s)?|beach(?:es)?|dunes?|rock(?:s|y)?|desert|"
        r"exposed soil|brown earth|barren",
        "bare",
    ),
    (r"snow(?:y|-covered|-clad|fields?|bound)?|ice|icy|frozen|frost", "snow"),
    (r"vegetation|vegetated|greenery|plant cover", "vegetation"),
)

#: words for the built-up group that claim a town, not just a few buildings (see the verifier's tolerances)
URBAN_WORDS = frozenset(
    {
        "urban",
        "town",
        "towns",
        "city",
        "cities",
        "suburb",
        "suburbs",
        "suburban",
        "residential",
        "neighbourhood",
        "neighborhood",
        "neighbourhoods",
        "neighborhoods",
    }
)

#: nouns that by themselves claim an extensive cover ("a desert" is not a few bare patches): substantial level
EXTENSIVE_WORDS = frozenset({"desert", "dunes", "jungle", "rainforest", "city", "cities", "expanse"})

#: quantifier phrases -> level; numbers and fraction words are handled separately
QUANTIFIERS: tuple[tuple[str, str], ...] = (
    (r"no|without|free of|devoid of|lacks?|lacking|absence of|not a single|never", "none"),
    (
        r"mostly|mainly|largely|predominantly|dominated|dominates?|dominating|dominant|most of|majority|"
        r"almost entirely|almost all|nearly all|nearly entirely|entirely|entire|whole|completely|"
        r"unbroken|blankets?|blanketed|fills?|covers? (?:most|nearly|almost|all|the (?:whole|entire))|"
        r"mantle|carpet",
        "dominant",
    ),
    (
        r"large|extensive|vast|expanses?|broad|dense|thick|wide|sweeping|much of|stretches|stretching|"
        r"sprawling|sizeable|sizable|big|sea of",
        "substantial",
    ),
    (
        r"small|smaller|few|scattered|patch(?:es|y)?|pockets?|strips?|slivers?|hints?|isolated|a little|"
        r"some|thin|narrow|bits?|specks?|dotted|sprinkl(?:ed|ing)|fringes?|fringed|clumps?|traces?|"
        r"occasional|modest",
        "minor",
    ),
)

#: fraction words -> percent of the tile they claim
FRACTION_WORDS = MappingProxyType(
    {
        "a tenth": 10.0, "one tenth": 10.0, "a fifth": 20.0, "one fifth": 20.0, "a quarter": 25.0,
        "one quarter": 25.0, "a third": 33.3, "one third": 33.3, "two fifths": 40.0, "half": 50.0,
        "three fifths": 60.0, "two thirds": 66.7, "three quarters": 75.0, "four fifths": 80.0,
        "nine tenths": 90.0,
    }
)  # fmt: skip

#: terrain words -> the relief class they claim (flat < gentle < hilly < mountainous)
RELIEF_ORDER: tuple[str, ...] = ("flat", "gentle", "hilly", "mountainous")
RELIEF_WORDS: tuple[tuple[str, str], ...] = (
    (r"mountain(?:s|ous)?|alpine|steep|rugged|craggy|peaks?|precipitous|cliffs?", "mountainous"),
    (r"hill(?:s|y|side|sides|ocks?)?|ridges?|ridged|hummocky", "hilly"),
    (r"gently rolling|rolling|undulating|gentle slopes?|gently sloping|softly rising", "gentle"),
    (r"flat|level|plains?|flatland|featureless|pancake|low relief", "flat"),
)
#: landform words checked against the geomorphon fractions -> geomorphon classes that support them
LANDFORM_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        r"valleys?|vales?|gull(?:y|ies)|ravines?|hollows?|basins?|depressions?",
        frozenset({"valley", "hollow", "depression", "footslope"}),
    ),
    (r"summits?|hilltops?|crests?|spurs?", frozenset({"summit", "ridge", "spur", "shoulder"})),
)
#: elevation words -> "high" or "low"
ELEVATION_WORDS: tuple[tuple[str, str], ...] = (
    (
        r"highlands?|plateaus?|plateaux|uplands?|high(?:-| )altitude|high(?:-| )elevation|elevated|tableland",
        "high",
    ),
    (r"lowlands?|low-lying|low lying|sea level|near-sea-level", "low"),
)
COAST_WORDS = r"coast(?:s|al|line|lines)?|seaside|seashore|seaboard|littoral"
SHORE_WORDS = r"shore(?:s|line|lines)?|waterfront|water's edge|waterside|banks?"

#: vegetation state words -> "lush" or "dry"
GREENNESS_WORDS: tuple[tuple[str, str], ...] = (
    (r"lush|verdant|green|greener|vigorous|thriving|emerald|leafy", "lush"),
    (
        r"dry|drier|parched|brown|browned|withered|dormant|sun-baked|arid|sere|yellowed|straw-coloured|sparse",
        "dry",
    ),
)
CLOUD_WORDS: tuple[tuple[str, str], ...] = (
    (r"cloud-free|cloudless|clear skies|clear sky|no clouds", "clear"),
    (r"cloudy|overcast|clouds?|haze|hazy", "cloudy"),
)
SAR_WORDS: tuple[tuple[str, str], ...] = (
    (
        r"radar-dark|dark (?:in|on) (?:the )?radar|low (?:radar )?backscatter|weak (?:radar )?backscatter|"
        r"smooth (?:in|on) (?:the )?radar",
        "dark",
    ),
    (
        r"radar-bright|bright (?:in|on) (?:the )?radar|high (?:radar )?backscatter|strong (?:radar )?backscatter",
        "bright",
    ),
    # specular reflection: a smooth surface (calm water, tarmac) sends the pulse away and reads dark
    (r"smooth(?:,? calm)? surfaces?|calm surfaces?|smooth (?:water|open water) surfaces?", "dark"),
    (r"rough surfaces?|roughened surfaces?", "bright"),
)
#: radar texture words (the spread of VV backscatter over the tile) -> "uniform" or "varied"
SAR_TEXTURE_WORDS: tuple[tuple[str, str], ...] = (
    (r"(?:uniform|homogeneous|even|smooth) (?:radar |backscatter )?texture", "uniform"),
    (r"(?:varied|heterogeneous|mixed|patchy|mottled) (?:radar |backscatter )?texture", "varied"),
)

#: features OpenStreetMap tags name and land-cover maps do not: caption words -> (feature, tags that show it).
#: A tag is ``(key, value)``; ``value`` ``None`` accepts any value of the key. Order matters for overlaps.
OSM_FEATURES: tuple[tuple[str, str, frozenset[tuple[str, str | None]]], ...] = (
    (r"solar (?:farm|park|plant)s?|solar panels?|photovoltaic", "solar farm",
     frozenset({("plant:source", "solar"), ("generator:source", "solar"), ("power", "solar")})),
    (r"wind (?:farm|park)s?|wind turbines?", "wind farm",
     frozenset({("generator:source", "wind"), ("plant:source", "wind")})),
    (r"marinas?|yacht harbou?rs?", "marina", frozenset({("leisure", "marina")})),
    (r"harbou?rs?|ports?|docks?", "harbour",
     frozenset({("harbour", None), ("landuse", "port"), ("industrial", "port"), ("leisure", "marina"),
                ("seamark:type", "harbour")})),
    (r"motorways?|highways?|freeways?|expressways?", "motorway",
     frozenset({("highway", "motorway"), ("highway", "trunk"), ("highway", "motorway_link")})),
    (r"railways?|railroads?|rail lines?|railway lines?|train tracks?", "railway",
     frozenset({("railway", "rail"), ("railway", None)})),
    (r"airports?|airfields?|runways?|airstrips?", "airport",
     frozenset({("aeroway", "aerodrome"), ("aeroway", "runway"), ("aeroway", None)})),
    (r"golf courses?", "golf course", frozenset({("leisure", "golf_course"), ("golf", None)})),
    (r"quarr(?:y|ies)|open-pit mines?|mines?", "quarry",
     frozenset({("landuse", "quarry"), ("man_made", "mineshaft"), ("industrial", "mine")})),
    (r"vineyards?", "vineyard", frozenset({("landuse", "vineyard")})),
    (r"orchards?", "orchard", frozenset({("landuse", "orchard")})),
    (r"cemeter(?:y|ies)|graveyards?", "cemetery", frozenset({("landuse", "cemetery"), ("amenity", "grave_yard")})),
    (r"stadiums?|sports? pitch(?:es)?", "stadium", frozenset({("leisure", "stadium"), ("leisure", "pitch")})),
    (r"power lines?|pylons?|transmission lines?", "power line",
     frozenset({("power", "line"), ("power", "tower"), ("power", "minor_line")})),
    (r"dams?|weirs?", "dam", frozenset({("waterway", "dam"), ("waterway", "weir"), ("man_made", "dyke")})),
    (r"canals?", "canal", frozenset({("waterway", "canal")})),
    (r"bridges?", "bridge", frozenset({("bridge", None), ("man_made", "bridge")})),
    (r"piers?|jett(?:y|ies)", "pier", frozenset({("man_made", "pier"), ("man_made", "breakwater")})),
    (r"lighthouses?", "lighthouse", frozenset({("man_made", "lighthouse")})),
    (r"industrial (?:estate|park|zone|area)s?|factor(?:y|ies)", "industrial area",
     frozenset({("landuse", "industrial"), ("man_made", "works")})),
    (r"national parks?|nature reserves?|protected areas?", "nature reserve",
     frozenset({("boundary", "national_park"), ("leisure", "nature_reserve"), ("boundary", "protected_area")})),
)  # fmt: skip

SEASONS: tuple[str, ...] = ("winter", "spring", "summer", "autumn")
SEASON_WORDS: tuple[tuple[str, str], ...] = (
    (r"winter(?:time|'s)?|wintry|midwinter", "winter"),
    (r"spring(?:time)?", "spring"),
    (r"summer(?:time|'s)?|midsummer", "summer"),
    (r"autumn(?:al)?|fall", "autumn"),
)
MONTHS: tuple[str, ...] = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december",
)  # fmt: skip

#: words that carry grammar rather than content; a long text with almost none of them is not a sentence
_FUNCTION_WORDS_TEXT = """
a an the of and or in on at by with from to into across over under near along its it is are was were be as
this that these those which where while some most much few little about around than through between beside
behind beyond alongside amid among for not no only all each every there their has have up down out then so
very both any other such can will within without toward towards onto upon below above
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())


def word_pattern(alternatives: str) -> re.Pattern[str]:
    """Compile ``alternatives`` to match whole words only, case-insensitively."""
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def concept_share(fractions: dict[str, float], group: str) -> float:
    """The share (0..100) a claim group has in a ``{concept: percent}`` table."""
    return float(sum(fractions.get(c, 0.0) for c in GROUPS[group]))
