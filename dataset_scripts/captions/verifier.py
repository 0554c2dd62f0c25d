"""Verifier: extract every checkable claim from a caption and check it against the fact sheet.

A caption is split into sentences and clauses (at commas, semicolons and the conjunctions "while",
"whereas", "but", "with", "where"). Each clause is read for claims in a fixed order, and the words a claim
uses are masked so that a later reader does not read them again ("Hudson Bay" is a place, not a bay;
"sea level" is an elevation, not the sea; "brown earth" is bare ground, not dry vegetation):

1. places (country, continent and region names from :mod:`.gazetteer` and the sheet's own place names;
   other capitalised names after "in", "near", "of" are unverifiable place claims), months and years;
2. numbers with units (%, m, km, ft, degrees, dB) and fraction words ("about a third");
3. elevation words (highland, lowland, sea level), coast and shore words, relief words (flat, hilly,
   mountainous), landforms (valley, summit);
4. land-cover words (:data:`.lexicon.GROUP_WORDS`) with the quantifiers and shares nearest to them;
5. vegetation state, clouds, radar character, seasons.

Tolerances (a claim inside its band is *supported*, outside the wider band *contradicted*, in between
*unverifiable*):

* land-cover share given as a number: supported within max(10 points, 25 % of the claim), else
  contradicted; a fraction word ("half", "a third") is looser: max(12.5 points, 30 %); "more than X" /
  "under X" allow 5 points of slack.
* land cover without a number: presence needs >= 0.5 % (contradicted below 0.2 %); "city", "town",
  "urban" need >= 5 % built-up (contradicted below 2 %); minor words ("patches", "scattered") need
  0.5-45 % (contradicted above 60 %); substantial words ("extensive", "dense") need >= 15 %
  (contradicted below 7 %); dominant words ("mostly", "blankets") need >= 40 %, or >= 25 % for the
  largest class (contradicted otherwise); "no X" needs < 2 % (contradicted from 5 %). A claim holds if
  any available source supports it (Dynamic World, WorldCover, and for water the water signal, for snow
  the snow fraction): the products disagree, and only a claim every source rules out is a hallucination.
* elevation in metres: within [min - t, max + t], t = max(25 m, 10 %); relief: within max(15 m, 35 %);
  mean slope: within max(3 deg, 50 %); canopy height: within [0.5 x mean - 3 m, 1.3 x p90 + 3 m];
  distance to the nearest place: within max(5 km, 50 %); backscatter: within 3 dB.
* relief words: "flat" holds on flat and gentle terrain, "rolling" on anything but mountainous,
  "hilly" on anything but flat, "mountainous" on mountainous terrain or hilly terrain with >= 250 m of
  relief. Highland words need a mean elevation >= 600 m (contradicted below 400 m), lowland words
  <= 400 m (contradicted from 600 m), "sea level" a minimum <= 20 m (contradicted above 100 m).
* landform words: contradicted on flat terrain (geomorphons of a flat tile trace the DEM's integer
  steps, not landforms a person sees); else supported when the supporting geomorphon classes cover
  >= 10 % of the tile, contradicted below 3 %.
* coast: the derived ``water.coastal`` fact; shore: ``water.shoreline``; both are contradicted on a tile
  without water.
* vegetation state: "lush/green" needs NDVI p90 >= 0.6 (contradicted below 0.45); "dry/brown" needs
  p90 < 0.5 (contradicted from 0.65). Clouds: "clear" <= 10 % (contradicted above 25 %), "cloudy"
  >= 10 % (contradicted below 3 %). Radar: "dark" VV < -13 dB (contradicted above -10 dB), "bright"
  VV > -9 dB (contradicted below -12 dB).
* season, month and year: exact match with the acquisition date; temperate seasons are unverifiable in
  the tropics. Places: exact match of country, continent, broad region or the gazetteer's region; another
  country, continent or region is contradicted; "near <nearest place>" needs it within 50 km
  (contradicted beyond 100 km). Latitude words: tropical |lat| < 23.5, subarctic/boreal 50-70,
  arctic >= 66, temperate in between; coordinates within 0.5 degrees.
* spectral cover (``cover.spectral.*``, Sentinel-2 index classes, used where no product is present and as
  extra support where one is): a claim is judged over the whole range of shares the indices allow a group
  and gets a verdict only where it holds (or fails) over all of it. ``vegetation`` spans [vegetation,
  vegetation + other], bare + built ("bare or built-up ground") [bare + built, + other]; water and snow are
  exact; trees, grassland, crops and wetland are bounded above by vegetation + other only (the indices see
  vegetation, not its kind), bare and built each by bare + built + other (NDBI is positive on dry soil).
  The share tolerances are those of the land-cover products above.
* radar texture: "uniform" needs the VV standard deviation <= 3 dB (contradicted above 4 dB), "varied"
  >= 4 dB (contradicted below 3 dB); "smooth surface" reads as radar-dark, "rough surface" as bright. Water
  from radar (VV < -18 dB) is a water source only where nothing optical measures water, and only outside
  winter (dry and wet snow are radar-dark too).
* geomorphon class without a DEM (the release's ``terrain_class``): it supports landform words of its own
  class; a flat majority contradicts landform words and "mountainous" and supports "flat"/"gentle".
* OSM features (:data:`.lexicon.OSM_FEATURES`, read before land cover: a solar farm is not farmland):
  supported by a matching tag at any scale; contradicted when the release listed tags for the sample and
  none shows the feature; unverifiable without tags (or an empty list).
* a word preceded by a negation, also across a list ("no hills", "without trees, water or buildings"),
  takes the opposite verdict.
* qualifiers attach to the nearest land-cover word, counted in words; reaching back over "and", "or" or a
  comma costs three words, and a parenthesis qualifies the word before it ("buildings (about a third)").
  "The rest" and "of the land" make a share relative to what the largest other class, or the water,
  leaves ("half is water, the rest mostly forest").

A caption is *accepted* when it has no contradicted claim, at least one supported claim, and reads as
text (at least 10 % function words once it is longer than five words: random token soup has almost none).
With ``repair=True`` contradicted clauses are removed first (the whole sentence when its main clause is
the contradicted one) and the verdict applies to what remains.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .gazetteer import COUNTRIES, SUBREGIONS, continent_of, place_names
from .lexicon import (
    AGGREGATE_GROUPS,
    CLOUD_WORDS,
    COAST_WORDS,
    ELEVATION_WORDS,
    EXTENSIVE_WORDS,
    FRACTION_WORDS,
    FUNCTION_WORDS,
    GREENNESS_WORDS,
    GROUP_WORDS,
    GROUPS,
    LANDFORM_WORDS,
    MONTHS,
    OSM_FEATURES,
    QUANTIFIERS,
    RELIEF_ORDER,
    RELIEF_WORDS,
    SAR_TEXTURE_WORDS,
    SAR_WORDS,
    SEASON_WORDS,
    SHORE_WORDS,
    URBAN_WORDS,
    concept_share,
    word_pattern,
)
from .orchestrator import FactSheet

Verdict = Literal["supported", "contradicted", "unverifiable"]
SUPPORTED: Verdict = "supported"
CONTRADICTED: Verdict = "contradicted"
UNVERIFIABLE: Verdict = "unverifiable"
MIN_FUNCTION_WORD_RATIO = 0.10
MAX_WORDS = 80

# a negation and up to three list items before the word: "no hills", "without trees, water or buildings"
_NEGATION = re.compile(
    r"\b(?:no|not|without|never|nor|free of|devoid of|lacks?|lacking|absence of)\s+(?:any\s+)?"
    r"(?:[\w-]+(?:\s+[\w-]+)?(?:,\s*|\s+or\s+|\s+nor\s+|,\s+or\s+)){0,3}(?:(?!and\b|but\b|while\b|where\b)[\w-]+\s+){0,2}$",
    re.IGNORECASE,
)
#: "the rest" and "of the land" make a share relative to what the other classes (or the water) leave
_OPEN_PAREN = re.compile(
    r"\(\s*(?:about|around|roughly|nearly|almost|over|under|some|just|~)?\s*(?:over|under)?\s*$", re.I
)
_MEASURE_AFTER = re.compile(
    r"\s+(?:metres|meters|m|km|kilometres|kilometers|feet|days|weeks|years|hundred)\b", re.I
)
_RELATIVE = re.compile(
    r"\b(?:the rest|the remainder|the remaining|rest of the)\b|\bof the land\b", re.IGNORECASE
)
_ABOVE_SEA_LEVEL = re.compile(
    r"(?<!just )(?<!barely )(?<!only just )\babove sea level\b|\ba\.s\.l\.", re.IGNORECASE
)
_NUMBER = re.compile(
    r"(?P<cmp>about|around|roughly|approximately|some|nearly|almost|over|more than|less than|under|below|"
    r"above|up to|at least|just under|just over|~)?\s*(?P<num>[-−]?\d{1,3}(?:,\d{3})+|[-−]?\d+(?:\.\d+)?)\s*"
    r"(?P<unit>%|percent|per cent|metres|meters|metre|meter|m|kilometres|kilometers|km|feet|ft|°|degrees?|dB)"
    r"(?P<hemi>\s*[NSEW]\b)?(?![\w])",
    re.IGNORECASE,
)
_FRACTION = re.compile(
    r"(?P<cmp>about|around|roughly|nearly|almost|over|more than|less than|under|just under|just over)?\s*"
    r"(?P<frac>" + "|".join(sorted(FRACTION_WORDS, key=len, reverse=True)) + r")(?![\w-])",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<![\w.,-])(19[5-9]\d|20\d\d)(?![\w.,%-])")
_MONTH = re.compile(r"\b(" + "|".join(m.capitalize() for m in MONTHS) + r")\b")
_CAPITAL_AFTER = re.compile(
    r"\b(?:in|near|of|outside|around|from|across)\s+(?:the\s+)?"
    r"((?:[A-Z][\w'’-]+)(?:\s+(?:[A-Z][\w'’-]+|de|do|da|del|of))*)"
)
_SEA_LEVEL = word_pattern(r"(?:at|near|close to|just above|barely above|only just above) sea level")
_LATITUDE_WORDS: tuple[tuple[str, str], ...] = (
    (r"tropical|tropics|equatorial", "tropical"),
    (r"subarctic|boreal", "subarctic"),
    (r"arctic|polar", "arctic"),
    (r"temperate|mid-latitude", "temperate"),
)
#: claim kind -> topic (cover claims carry their own, ``cover:<group>``)
_KIND_TOPIC = {
    "coast": "coast",
    "shore": "coast",
    "relief": "relief",
    "landform": "relief",
    "slope": "relief",
    "elevation": "elevation",
    "month": "date",
    "year": "date",
    "season": "date",
    "place": "place",
    "distance": "place",
    "latitude": "place",
    "canopy": "canopy",
    "greenness": "greenness",
    "cloud": "cloud",
    "radar": "radar",
    "backscatter": "radar",
    "extent": "extent",
    "radar_texture": "radar",
    "osm": "osm",
}
_CLAUSE_SPLIT = re.compile(r",\s+|;\s*|\s+(?=(?:while|whereas|but|with|where)\b)", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass
class Claim:
    """One checkable statement of a caption and its verdict against the fact sheet.

    Attributes:
        text: the caption's words that make the claim.
        kind: ``cover``, ``elevation``, ``relief``, ``landform``, ``coast``, ``shore``, ``slope``,
            ``canopy``, ``distance``, ``backscatter``, ``greenness``, ``cloud``, ``radar``, ``season``,
            ``month``, ``year``, ``place``, ``latitude``.
        verdict: supported, contradicted or unverifiable.
        fact: the fact it was checked against, as ``"name = value unit"``; ``None`` when none exists.
        reason: the tolerance that decided.
        clause: index of the clause in the caption (sentence-major), used for repair.
        topic: what part of the fact sheet it speaks about (``cover:water``, ``relief``, ``place``, ...),
            which the evaluator's coverage score matches against the salient facts.
    """

    text: str
    kind: str
    verdict: Verdict
    fact: str | None
    reason: str
    clause: int = 0
    topic: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "kind": self.kind,
            "verdict": self.verdict,
            "fact": self.fact,
            "reason": self.reason,
            "clause": self.clause,
            "topic": self.topic,
        }


@dataclass
class Verification:
    """The verifier's answer for one caption.

    ``text`` is the caption as checked: the input, or the repaired caption when clauses were removed.
    """

    caption: str
    text: str
    accepted: bool
    claims: list[Claim] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def supported(self) -> int:
        return sum(c.verdict == SUPPORTED for c in self.claims)

    @property
    def contradicted(self) -> int:
        return sum(c.verdict == CONTRADICTED for c in self.claims)

    def to_dict(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "text": self.text,
            "accepted": self.accepted,
            "claims": [c.to_dict() for c in self.claims],
            "removed": list(self.removed),
            "reasons": list(self.reasons),
        }


@dataclass
class _Clause:
    text: str
    sentence: int
    main: bool  # the first clause of its sentence
    sep: str  # the separator text that preceded it in the caption


def split_clauses(caption: str) -> list[_Clause]:
    """Sentences, then clauses, keeping separators so the caption can be reassembled without some of them."""
    clauses: list[_Clause] = []
    for s_idx, sentence in enumerate(s for s in _SENTENCE_SPLIT.split(caption.strip()) if s.strip()):
        pos, sep = 0, ""
        for m in _CLAUSE_SPLIT.finditer(sentence):
            clauses.append(_Clause(sentence[pos : m.start()], s_idx, pos == 0, sep))
            pos, sep = m.end(), m.group(0)
        clauses.append(_Clause(sentence[pos:], s_idx, pos == 0, sep))
    return [c for c in clauses if c.text.strip() or c.main]


class _Masked:
    """A clause whose already-read words are blanked out, so no word is read as two claims."""

    def __init__(self, text: str, prefix: str = ""):
        self.original = text
        self.text = text
        self.prefix = prefix  # the sentence before this clause, for negated lists that span commas

    def take(self, start: int, end: int) -> str:
        piece = self.original[start:end]
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]
        return piece

    def finditer(self, pattern: re.Pattern[str]) -> Iterable[re.Match[str]]:
        return list(pattern.finditer(self.text))


@dataclass
class _Qualifier:
    start: int
    end: int
    level: str  # none / minor / substantial / dominant / number
    value: float | None = None
    cmp: str = ""
    text: str = ""


class Verifier:
    """Checks captions of one tile against its :class:`FactSheet` (tolerances in the module docstring)."""

    def __init__(self, sheet: FactSheet):
        self.sheet = sheet
        self._places = self._place_table()
        # the sheet's own names first (a region may share a word with a country), then the gazetteer's
        own = [n for n, (kind, _) in self._places.items() if kind == "own"]
        self._own_re = _names_pattern(own) if own else None
        self._patterns = _patterns()
        self._coast, self._shore = self._patterns["coast"][0][0], self._patterns["shore"][0][0]

    # -- public --------------------------------------------------------------------------------------
    def verify(self, caption: str, repair: bool = False) -> Verification:
        """Check ``caption``; with ``repair`` remove contradicted clauses and judge what remains."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a string, got {type(caption).__name__}")
        clauses = split_clauses(caption)
        claims = [
            c
            for i, clause in enumerate(clauses)
            for c in self._clause_claims(clause.text, i, _prefix(clauses, i))
        ]
        removed: list[str] = []
        text = caption.strip()
        if repair and any(c.verdict == CONTRADICTED for c in claims):
            bad = {c.clause for c in claims if c.verdict == CONTRADICTED}
            bad_sentences = {clauses[i].sentence for i in bad if clauses[i].main}
            keep = [i for i, c in enumerate(clauses) if i not in bad and c.sentence not in bad_sentences]
            removed = [clauses[i].text.strip() for i in range(len(clauses)) if i not in keep]
            text = _reassemble(clauses, keep)
            return self._judge(caption, text, [c for c in claims if c.clause in keep], removed)
        return self._judge(caption, text, claims, removed)

    def _judge(self, caption: str, text: str, claims: list[Claim], removed: list[str]) -> Verification:
        reasons = []
        if any(c.verdict == CONTRADICTED for c in claims):
            reasons.append("contradicted claim")
        if not any(c.verdict == SUPPORTED for c in claims):
            reasons.append("no supported claim")
        words = re.findall(r"[A-Za-z']+", text)
        if (
            len(words) > 5
            and sum(w.lower() in FUNCTION_WORDS for w in words) / len(words) < MIN_FUNCTION_WORD_RATIO
        ):
            reasons.append("does not read as a sentence")
        if len(words) > MAX_WORDS:
            reasons.append(f"longer than {MAX_WORDS} words")
        return Verification(caption, text, not reasons, claims, removed, reasons)

    # -- extraction ----------------------------------------------------------------------------------
    def _clause_claims(self, clause: str, index: int, prefix: str = "") -> list[Claim]:
        m = _Masked(clause, prefix)
        claims: list[Claim] = []
        claims += self._date_claims(m)
        claims += self._place_claims(m)
        qualifiers, number_claims = self._numbers(m)
        claims += number_claims
        claims += self._elevation_word_claims(m)
        claims += self._coast_claims(m)
        claims += self._relief_claims(m)
        claims += self._osm_claims(m)
        claims += self._cover_claims(m, qualifiers)
        claims += self._word_claims(m)
        for c in claims:
            c.clause = index
            c.topic = c.topic or _KIND_TOPIC.get(c.kind, c.kind)
        return claims

    def _place_table(self) -> dict[str, tuple[str, str]]:
        table = place_names()
        for key in ("country", "region", "nearest_place"):
            name = self.sheet.value(f"place.{key}")
            if name:
                table[str(name)] = ("own", key)
        return table

    def _place_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        code = str(self.sheet.value("place.country_code") or "").upper() or None
        for pattern in (self._own_re, _gazetteer_pattern()):
            if pattern is None:
                continue
            for match in m.finditer(pattern):
                kind, value = self._places[match.group(1)]
                m.take(match.start(), match.end())
                claims.append(self._check_place(match.group(0), kind, value, code))
        # "the Arctic", "the Tropics" are climate zones, not unknown places
        for pattern, zone in self._patterns["lat"]:
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                claims.append(self._maybe_negate(m, match, self._check_latitude_word(match.group(0), zone)))
        for match in m.finditer(_CAPITAL_AFTER):
            m.take(match.start(1), match.end(1))
            claims.append(
                Claim(match.group(1), "place", UNVERIFIABLE, None, "name not in the fact sheet or gazetteer")
            )
        return claims

    def _check_place(self, text: str, kind: str, value: str, code: str | None) -> Claim:
        if kind == "own" and value == "nearest_place":
            dist = self.sheet.value("place.distance_km")
            verdict = (
                UNVERIFIABLE
                if dist is None
                else SUPPORTED
                if dist <= 50
                else CONTRADICTED
                if dist > 100
                else UNVERIFIABLE
            )
            return Claim(
                text,
                "place",
                verdict,
                f"place.nearest_place = {self.sheet.value('place.nearest_place')} ({dist} km)",
                "nearest place within 50 km",
            )
        if kind == "own":
            return Claim(
                text,
                "place",
                SUPPORTED,
                f"place.{value} = {self.sheet.value(f'place.{value}')}",
                "exact name",
            )
        if code is None:
            return Claim(text, "place", UNVERIFIABLE, None, "no country in the fact sheet")
        fact = f"place.country_code = {code}"
        if kind == "country":
            ok = value == code
            return Claim(
                text,
                "place",
                SUPPORTED if ok else CONTRADICTED,
                fact,
                f"names {COUNTRIES[value][0]}" if value in COUNTRIES else "country name",
            )
        if kind == "subregion":
            return Claim(
                text,
                "place",
                SUPPORTED if code in SUBREGIONS[value] else CONTRADICTED,
                fact,
                f"{value} covers {sorted(SUBREGIONS[value])}",
            )
        continent = continent_of(code)
        if continent is None:
            return Claim(text, "place", UNVERIFIABLE, fact, "continent of the country unknown")
        return Claim(
            text,
            "place",
            SUPPORTED if continent == value else CONTRADICTED,
            fact,
            f"country is in continent {continent}",
        )

    def _date_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        month, year = self.sheet.value("date.month"), self.sheet.value("date.year")
        for match in m.finditer(_MONTH):
            m.take(match.start(), match.end())
            if month is None:
                claims.append(Claim(match.group(0), "month", UNVERIFIABLE, None, "no acquisition date"))
            else:
                ok = match.group(0).lower() == month
                claims.append(
                    Claim(
                        match.group(0),
                        "month",
                        SUPPORTED if ok else CONTRADICTED,
                        f"date.month = {month}",
                        "exact month",
                    )
                )
        for match in m.finditer(_YEAR):
            m.take(match.start(), match.end())
            if year is None:
                claims.append(Claim(match.group(0), "year", UNVERIFIABLE, None, "no acquisition date"))
            else:
                ok = int(match.group(0)) == int(year)
                claims.append(
                    Claim(
                        match.group(0),
                        "year",
                        SUPPORTED if ok else CONTRADICTED,
                        f"date.year = {year}",
                        "exact year",
                    )
                )
        return claims

    # -- numbers -------------------------------------------------------------------------------------
    def _numbers(self, m: _Masked) -> tuple[list[_Qualifier], list[Claim]]:
        qualifiers: list[_Qualifier] = []
        claims: list[Claim] = []
        for match in m.finditer(_NUMBER):
            # the words right around a number say what it measures ("rises 25 m" vs "at 1,200 m")
            before = m.original[max(0, match.start() - 30) : match.start()].lower()
            after = m.original[match.end() : match.end() + 30].lower()
            text = m.take(match.start(), match.end()).strip()
            value = float(match.group("num").replace(",", "").replace("−", "-"))
            unit, cmp = match.group("unit").lower(), (match.group("cmp") or "").lower()
            if unit in ("%", "percent", "per cent"):
                qualifiers.append(_Qualifier(match.start("num"), match.end(), "number", value, cmp, text))
            elif unit in ("°", "degree", "degrees") and match.group("hemi"):
                claims.append(self._check_coordinate(text, value, match.group("hemi").strip().upper()))
            elif unit in ("°", "degree", "degrees"):
                claims.append(self._check_slope(text, value))
            elif unit == "db":
                claims.append(self._check_backscatter(text, value, "vh" in before + after))
            else:
                metres = value * {
                    "km": 1000.0,
                    "kilometres": 1000.0,
                    "kilometers": 1000.0,
                    "ft": 0.3048,
                    "feet": 0.3048,
                }.get(unit, 1.0)
                claims.append(self._check_length(text, metres, cmp, before, after, unit))
        for match in m.finditer(_FRACTION):
            text = m.take(match.start(), match.end()).strip()
            value = FRACTION_WORDS[match.group("frac").lower()]
            qualifiers.append(
                _Qualifier(
                    match.start("frac"),
                    match.end(),
                    "number",
                    value,
                    (match.group("cmp") or "").lower(),
                    text,
                )
            )
        return qualifiers, claims

    def _check_length(self, text: str, metres: float, cmp: str, before: str, after: str, unit: str) -> Claim:
        if re.match(r"\s*(?:tall|high trees|canopy|trees)", after) or re.search(
            r"(?:canopy|trees?)\b[^.]{0,20}$", before
        ):
            return self._check_canopy(text, metres)
        if unit in ("km", "kilometres", "kilometers") and re.match(
            r"\s*(?:from|away|north|south|east|west|outside|of)\b", after
        ):
            return self._check_distance(text, metres / 1000.0)
        if re.match(
            r"\s*(?:of (?:local )?relief|of height difference|of variation|difference|of rise)", after
        ) or re.search(
            r"(?:relief of|rises?|rising|varies by|vary by|varying by|difference of|drop of|range of|within)\s+"
            r"(?:about|only|just|some|roughly|barely|around|less than|under|over|more than)?\s*$",
            before,
        ):
            return self._check_relief(text, metres)
        if re.match(r"\s*(?:wide|across|long|square)", after):
            return Claim(text, "extent", UNVERIFIABLE, None, "tile extents are not in the fact sheet")
        return self._check_elevation(text, metres, cmp)

    def _check_elevation(self, text: str, metres: float, cmp: str) -> Claim:
        lo, hi = self.sheet.value("elevation.min"), self.sheet.value("elevation.max")
        if lo is None:
            return Claim(text, "elevation", UNVERIFIABLE, None, "no DEM")
        tol = max(25.0, 0.1 * abs(metres))
        fact = f"elevation min/mean/max = {lo:g}/{self.sheet.value('elevation.mean'):g}/{hi:g} m"
        if cmp in ("over", "more than", "above", "at least", "just over"):
            ok = hi >= metres - tol
        elif cmp in ("under", "below", "less than", "up to", "just under"):
            ok = lo <= metres + tol
        else:
            ok = lo - tol <= metres <= hi + tol
        return Claim(
            text, "elevation", SUPPORTED if ok else CONTRADICTED, fact, f"within the range +- {tol:.0f} m"
        )

    def _check_relief(self, text: str, metres: float) -> Claim:
        relief = self.sheet.value("terrain.relief")
        if relief is None:
            return Claim(text, "relief", UNVERIFIABLE, None, "no DEM")
        tol = max(15.0, 0.35 * relief)
        ok = abs(metres - relief) <= tol
        return Claim(
            text,
            "relief",
            SUPPORTED if ok else CONTRADICTED,
            f"terrain.relief = {relief:g} m",
            f"+- {tol:.0f} m",
        )

    def _check_slope(self, text: str, degrees: float) -> Claim:
        slope = self.sheet.value("slope.mean")
        if slope is None:
            return Claim(text, "slope", UNVERIFIABLE, None, "no DEM")
        tol = max(3.0, 0.5 * slope)
        ok = abs(degrees - slope) <= tol
        return Claim(
            text,
            "slope",
            SUPPORTED if ok else CONTRADICTED,
            f"slope.mean = {slope:g} deg",
            f"+- {tol:.1f} deg",
        )

    def _check_canopy(self, text: str, metres: float) -> Claim:
        mean, p90 = self.sheet.value("canopy.height_mean"), self.sheet.value("canopy.height_p90")
        if mean is None:
            return Claim(text, "canopy", UNVERIFIABLE, None, "no canopy height layer")
        ok = 0.5 * mean - 3 <= metres <= 1.3 * p90 + 3
        return Claim(
            text,
            "canopy",
            SUPPORTED if ok else CONTRADICTED,
            f"canopy height mean/p90 = {mean:g}/{p90:g} m",
            "within [0.5 mean - 3, 1.3 p90 + 3] m",
        )

    def _check_distance(self, text: str, km: float) -> Claim:
        dist = self.sheet.value("place.distance_km")
        if dist is None:
            return Claim(text, "distance", UNVERIFIABLE, None, "no nearest place")
        tol = max(5.0, 0.5 * dist)
        ok = abs(km - dist) <= tol
        return Claim(
            text,
            "distance",
            SUPPORTED if ok else CONTRADICTED,
            f"place.distance_km = {dist:g} km",
            f"+- {tol:.0f} km",
        )

    def _check_backscatter(self, text: str, db: float, vh: bool) -> Claim:
        name = "sar.vh_db" if vh else "sar.vv_db"
        value = self.sheet.value(name)
        if value is None:
            return Claim(text, "backscatter", UNVERIFIABLE, None, "no Sentinel-1")
        ok = abs(db - value) <= 3.0
        return Claim(
            text, "backscatter", SUPPORTED if ok else CONTRADICTED, f"{name} = {value:g} dB", "+- 3 dB"
        )

    def _check_coordinate(self, text: str, degrees: float, hemi: str) -> Claim:
        key = "place.lat" if hemi in "NS" else "place.lon"
        value = self.sheet.value(key)
        if value is None:
            return Claim(text, "latitude", UNVERIFIABLE, None, "no coordinates")
        signed = degrees if hemi in "NE" else -degrees
        ok = abs(signed - value) <= 0.5
        return Claim(text, "latitude", SUPPORTED if ok else CONTRADICTED, f"{key} = {value:g}", "+- 0.5 deg")

    # -- words ---------------------------------------------------------------------------------------
    def _negated(self, m: _Masked, start: int) -> bool:
        return bool(_NEGATION.search(m.prefix + m.original[:start]))

    def _elevation_word_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        mean, lo = self.sheet.value("elevation.mean"), self.sheet.value("elevation.min")
        for match in m.finditer(_ABOVE_SEA_LEVEL):
            m.take(match.start(), match.end())  # the unit of an elevation figure, not a claim of its own
        for match in m.finditer(_SEA_LEVEL):
            m.take(match.start(), match.end())
            if lo is None:
                claims.append(Claim(match.group(0), "elevation", UNVERIFIABLE, None, "no DEM"))
                continue
            verdict = SUPPORTED if lo <= 20 else CONTRADICTED if lo > 100 else UNVERIFIABLE
            claims.append(
                Claim(match.group(0), "elevation", verdict, f"elevation.min = {lo:g} m", "min <= 20 m")
            )
        for pattern, which in self._patterns["elev"]:
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                if mean is None:
                    claims.append(Claim(match.group(0), "elevation", UNVERIFIABLE, None, "no DEM"))
                    continue
                if which == "high":
                    verdict = SUPPORTED if mean >= 600 else CONTRADICTED if mean < 400 else UNVERIFIABLE
                    reason = "mean >= 600 m"
                else:
                    verdict = SUPPORTED if mean <= 400 else CONTRADICTED if mean >= 600 else UNVERIFIABLE
                    reason = "mean <= 400 m"
                claims.append(
                    self._maybe_negate(
                        m,
                        match,
                        Claim(match.group(0), "elevation", verdict, f"elevation.mean = {mean:g} m", reason),
                    )
                )
        return claims

    def _coast_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        water = self.sheet.value("water.percentage")
        for pattern, fact_name, kind in (
            (self._coast, "water.coastal", "coast"),
            (self._shore, "water.shoreline", "shore"),
        ):
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                value = self.sheet.value(fact_name)
                if value is True:
                    verdict: Verdict = SUPPORTED
                elif (water is not None and water < 0.5) or (value is False and kind == "coast"):
                    verdict = CONTRADICTED
                else:
                    verdict = UNVERIFIABLE
                fact = f"{fact_name} = {value}" if value is not None else f"water.percentage = {water}"
                claims.append(
                    self._maybe_negate(
                        m, match, Claim(match.group(0), kind, verdict, fact, "derived shoreline/coast rule")
                    )
                )
        return claims

    def _relief_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        actual = self.sheet.value("terrain.relief_class")
        relief = self.sheet.value("terrain.relief")
        for pattern, word_class in self._patterns["relief"]:
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                if actual is None:
                    claims.append(
                        self._maybe_negate(m, match, self._relief_from_class(match.group(0), word_class))
                    )
                    continue
                a = RELIEF_ORDER.index(actual)
                ok = {
                    "flat": a <= 1,
                    "gentle": a <= 2,
                    "hilly": a >= 1,
                    "mountainous": a == 3 or (a == 2 and relief >= 250),
                }[word_class]
                claim = Claim(
                    match.group(0),
                    "relief",
                    SUPPORTED if ok else CONTRADICTED,
                    f"terrain.relief_class = {actual} (relief {relief:g} m)",
                    f"'{word_class}' word",
                )
                claims.append(self._maybe_negate(m, match, claim))
        for pattern, classes in self._patterns["landform"]:
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                claims.append(self._maybe_negate(m, match, self._check_landform(match.group(0), classes)))
        return claims

    def _relief_from_class(self, text: str, word_class: str) -> Claim:
        """Without a DEM: a flat geomorphon majority (the release's terrain_class) supports flat words only."""
        majority = self.sheet.value("terrain.class")
        if majority is None:
            return Claim(text, "relief", UNVERIFIABLE, None, "no DEM")
        if word_class in ("flat", "gentle") and majority == "flat":
            return Claim(text, "relief", SUPPORTED, "terrain.class = flat", "flat majority landform")
        if word_class in ("mountainous",) and majority == "flat":
            return Claim(text, "relief", CONTRADICTED, "terrain.class = flat", "flat majority landform")
        return Claim(text, "relief", UNVERIFIABLE, f"terrain.class = {majority}", "majority landform only")

    def _check_landform(self, text: str, classes: frozenset[str]) -> Claim:
        if self.sheet.value("terrain.relief_class") == "flat":
            # geomorphons of a flat tile are the DEM's integer steps, not landforms a person sees
            return Claim(
                text, "landform", CONTRADICTED, "terrain.relief_class = flat", "flat terrain has no landforms"
            )
        fractions = {
            f.name.split(".")[-1]: float(f.value) for f in self.sheet.with_prefix("terrain.geomorphon.")
        }
        if fractions:
            share = sum(fractions.get(c, 0.0) for c in classes)
            verdict = SUPPORTED if share >= 10 else CONTRADICTED if share < 3 else UNVERIFIABLE
            return Claim(
                text, "landform", verdict, f"geomorphon {sorted(classes)} = {share:.1f} %", ">= 10 %"
            )
        if self.sheet.value("terrain.relief_class") == "flat":
            return Claim(
                text, "landform", CONTRADICTED, "terrain.relief_class = flat", "flat terrain has no landforms"
            )
        majority = self.sheet.value("terrain.class")
        if majority is not None:
            # only the majority class is known (the release's terrain_class): it supports its own words,
            # and a flat majority rules landforms out; any other majority says nothing of the minorities
            if majority in classes:
                return Claim(text, "landform", SUPPORTED, f"terrain.class = {majority}", "majority landform")
            if majority == "flat":
                return Claim(text, "landform", CONTRADICTED, "terrain.class = flat", "flat majority landform")
        return Claim(text, "landform", UNVERIFIABLE, None, "no geomorphon fractions")

    def _maybe_negate(self, m: _Masked, match: re.Match[str], claim: Claim) -> Claim:
        if not self._negated(m, match.start()) or claim.verdict == UNVERIFIABLE:
            return claim
        claim.verdict = CONTRADICTED if claim.verdict == SUPPORTED else SUPPORTED
        claim.reason = f"negated: {claim.reason}"
        return claim

    # -- land cover ----------------------------------------------------------------------------------
    def _cover_claims(self, m: _Masked, qualifiers: list[_Qualifier]) -> list[Claim]:
        mentions: list[tuple[int, int, str, str]] = []
        for pattern, group in self._patterns["group"]:
            for match in m.finditer(pattern):
                mentions.append((match.start(), match.end(), group, m.take(match.start(), match.end())))
        for pattern, level in self._patterns["quant"]:
            for match in m.finditer(pattern):
                if _MEASURE_AFTER.match(m.original, match.end()):
                    continue  # "a few metres above sea level" quantifies a length, not a land cover
                m.take(match.start(), match.end())
                qualifiers.append(_Qualifier(match.start(), match.end(), level, text=match.group(0)))
        for match in m.finditer(_RELATIVE):
            m.take(match.start(), match.end())
            level = "land" if "land" in match.group(0).lower() else "rest"
            qualifiers.append(_Qualifier(match.start(), match.end(), level, text=match.group(0)))
        if not mentions:
            return []
        attached: dict[int, list[_Qualifier]] = {i: [] for i in range(len(mentions))}
        for q in qualifiers:
            # nearest mention; on a tie the following one ("mostly cropland"), as quantifiers lead in English;
            # a parenthesis qualifies what precedes it ("buildings (about a third) and trees")
            candidates = list(range(len(mentions)))
            if _OPEN_PAREN.search(m.original[: q.start]) and any(mn[1] <= q.start for mn in mentions):
                candidates = [i for i in candidates if mentions[i][1] <= q.start]
            best = min(candidates, key=lambda i: (_gap(q, mentions[i], m.original), mentions[i][0] < q.start))
            attached[best].append(q)
        claims = []
        for i, (start, _end, group, text) in enumerate(mentions):
            quals = attached[i]
            words = " ".join(
                piece for _, piece in sorted([(q.start, q.text) for q in quals] + [(start, text)])
            )
            negated = self._negated(m, start) and not any(q.level == "none" for q in quals)
            relative = next((q.level for q in quals if q.level in ("rest", "land")), None)
            ranked = ["number", "none", "dominant", "substantial", "minor"]
            level_q = min(
                (q for q in quals if q.level in ranked), key=lambda q: ranked.index(q.level), default=None
            )
            level = (
                "none" if negated else level_q.level if level_q else "dominant" if relative else "presence"
            )
            if level == "presence" and text.lower() in EXTENSIVE_WORDS:
                level = "substantial"  # "a desert", "a city": the noun itself claims an extensive cover
            claims.append(self._check_cover(words.strip(), group, text.lower(), level, level_q, relative))
        return claims

    def _cover_sources(self, group: str) -> list[tuple[str, float]]:
        sources = [
            (f"cover.{layer}", concept_share(self.sheet.cover(layer), group))
            for layer in self.sheet.product_layers()
        ]
        if group == "water" and self.sheet.value("water.percentage") is not None:
            sources.append(("water.percentage", float(self.sheet.value("water.percentage"))))
        if group == "snow" and self.sheet.value("snow.percentage") is not None:
            sources.append(("snow.percentage", float(self.sheet.value("snow.percentage"))))
        if group == "water" and not sources and self.sheet.value("sar.water_percentage") is not None:
            # radar water only where nothing optical measures water: tarmac, sand and shadow read dark too
            sources.append(("sar.water_percentage", float(self.sheet.value("sar.water_percentage"))))
        return sources

    def _spectral_interval(self, group: str) -> tuple[float, float] | None:
        """The share (lo, hi) the spectral classes allow a group: a range where the indices cannot decide.

        ``other`` (0.2 <= NDVI < 0.3, dark unvegetated) may be either vegetation or bare ground; the
        indices see vegetation but not which kind, and bare vs built only by their order (NDBI is positive
        on dry soil), so sub-groups are bounded from above only.
        """
        cover = self.sheet.cover("spectral")
        if not cover:
            return None
        veg, other = cover.get("vegetation", 0.0), cover.get("other", 0.0)
        unveg = cover.get("bare", 0.0) + cover.get("built", 0.0)
        if group in ("water", "snow"):
            return cover.get(group, 0.0), cover.get(group, 0.0)
        if group == "vegetation":
            return veg, min(100.0, veg + other)
        if group == "unvegetated":
            return unveg, min(100.0, unveg + other)
        if group in ("bare", "built"):
            return 0.0, min(100.0, unveg + other)
        return 0.0, min(100.0, veg + other)  # trees, open vegetation, crops, wetland

    def _check_spectral(
        self, group: str, word: str, level: str, q: _Qualifier | None
    ) -> tuple[Verdict, str, float, float] | None:
        """The verdict that holds for every share in the spectral interval, else unverifiable."""
        interval = self._spectral_interval(group)
        if interval is None:
            return None
        lo, hi = interval
        cover = self.sheet.cover("spectral")
        rivals = [v for k, v in cover.items() if k != "other" and k not in (GROUPS.get(group) or {group})]
        shares = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else [lo]
        verdicts = set()
        for s in shares:
            # which class is largest is known only for the directly measured groups
            options = [s >= max(rivals, default=0.0)] if lo == hi or group == "vegetation" else [True, False]
            for largest in options:
                verdicts.add(self._cover_verdict(group, word, s, level, q, "cover.spectral", largest)[0])
        _, reason = self._cover_verdict(group, word, lo, level, q, "cover.spectral", True)
        verdict = verdicts.pop() if len(verdicts) == 1 else UNVERIFIABLE
        return verdict, f"{reason} over the spectral range {lo:.0f}-{hi:.0f} %", lo, hi

    def _check_cover(
        self, text: str, group: str, word: str, level: str, q: _Qualifier | None, relative: str | None = None
    ) -> Claim:
        sources = self._cover_sources(group)
        topic = f"cover:{group}"
        # "the rest" / "of the land" are shares of a product's classes; the spectral range is absolute
        spectral = None if relative else self._check_spectral(group, word, level, q)
        if not sources and spectral is None:
            return Claim(text, "cover", UNVERIFIABLE, None, f"no layer measures {group}", topic=topic)
        results = []
        if spectral is not None and (spectral[0] == SUPPORTED or not sources):
            # products win where present: the spectral range only adds support to them
            verdict, reason, lo, hi = spectral
            results.append((verdict, reason, f"cover.spectral {group} = {lo:.1f}-{hi:.1f} %"))
        for source, share in sources:
            s = self._relative_share(group, share, source, relative) if relative else share
            verdict, reason = self._cover_verdict(group, word, s, level, q, source)
            if relative:
                reason = f"{reason} ({relative}: {s:.0f} % of what the other classes leave)"
            results.append((verdict, reason, f"{source} {group} = {share:.1f} %"))
        # any supporting source wins; a contradiction needs every source to contradict
        order = {SUPPORTED: 0, UNVERIFIABLE: 1, CONTRADICTED: 2}
        verdict, reason, fact = min(results, key=lambda r: order[r[0]])
        return Claim(text, "cover", verdict, fact, reason, topic=topic)

    def _relative_share(self, group: str, share: float, source: str, relative: str) -> float:
        """A share as a percentage of the land ("of the land") or of what the largest other class leaves ("the rest")."""
        layers = self.sheet.cover_layers()
        layer = source.split(".")[1] if source.startswith("cover.") else (layers[0] if layers else None)
        cover = self.sheet.cover(layer) if layer else {}
        if relative == "land":
            taken = concept_share(cover, "water")
        else:
            taken = max(
                (concept_share(cover, g) for g in GROUPS if g != group and g not in AGGREGATE_GROUPS),
                default=0.0,
            )
        return min(100.0, 100.0 * share / (100.0 - taken)) if taken < 99.0 else share

    def _cover_verdict(
        self,
        group: str,
        word: str,
        s: float,
        level: str,
        q: _Qualifier | None,
        source: str,
        largest: bool | None = None,
    ) -> tuple[Verdict, str]:
        if level == "number" and q is not None and q.value is not None:
            v = q.value
            if q.cmp in ("over", "more than", "at least", "just over"):
                return (SUPPORTED if s >= v - 5 else CONTRADICTED), f"share >= {v:g} - 5"
            if q.cmp in ("under", "less than", "up to", "just under"):
                return (SUPPORTED if s <= v + 5 else CONTRADICTED), f"share <= {v:g} + 5"
            # fraction words are looser than digits: "half" is said of 37-63 %, "45 %" of 35-55 %
            tol = max(12.5, 0.3 * v) if q.text and not re.search(r"\d", q.text) else max(10.0, 0.25 * v)
            return (SUPPORTED if abs(s - v) <= tol else CONTRADICTED), f"|share - {v:g}| <= {tol:.0f}"
        if level == "none":
            return (SUPPORTED if s < 2 else CONTRADICTED if s >= 5 else UNVERIFIABLE), "absent: share < 2 %"
        if level == "dominant":
            largest = self._is_largest(group, source) if largest is None else largest
            ok = s >= 40 or (s >= 25 and largest)
            return (SUPPORTED if ok else CONTRADICTED), "dominant: >= 40 %, or >= 25 % and largest"
        if level == "substantial":
            return (SUPPORTED if s >= 15 else CONTRADICTED if s < 7 else UNVERIFIABLE), "substantial: >= 15 %"
        if level == "minor":
            if s > 60 or s < 0.2:
                return CONTRADICTED, "minor: 0.5-45 %"
            return (SUPPORTED if 0.5 <= s <= 45 else UNVERIFIABLE), "minor: 0.5-45 %"
        if group == "built" and word in URBAN_WORDS:
            return (
                SUPPORTED if s >= 5 else CONTRADICTED if s < 2 else UNVERIFIABLE
            ), "urban: built-up >= 5 %"
        return (SUPPORTED if s >= 0.5 else CONTRADICTED if s < 0.2 else UNVERIFIABLE), "present: >= 0.5 %"

    def _is_largest(self, group: str, source: str) -> bool:
        if not source.startswith("cover."):
            return False
        cover = self.sheet.cover(source.split(".")[1])
        share = concept_share(cover, group)
        others = [concept_share(cover, g) for g in GROUPS if g != group and g not in AGGREGATE_GROUPS]
        return share >= max(others, default=0.0)

    # -- other words ---------------------------------------------------------------------------------
    def _word_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        for key, check in (
            ("green", self._check_greenness),
            ("cloud", self._check_cloud),
            ("texture", self._check_texture),
            ("sar", self._check_radar),
            ("season", self._check_season),
        ):
            for pattern, which in self._patterns[key]:
                for match in m.finditer(pattern):
                    m.take(match.start(), match.end())
                    claims.append(self._maybe_negate(m, match, check(match.group(0), which)))
        return claims

    def _check_greenness(self, text: str, which: str) -> Claim:
        p90 = self.sheet.value("spectral.ndvi_p90")
        if p90 is None:
            return Claim(text, "greenness", UNVERIFIABLE, None, "no Sentinel-2")
        if which == "lush":
            verdict = SUPPORTED if p90 >= 0.6 else CONTRADICTED if p90 < 0.45 else UNVERIFIABLE
        else:
            verdict = SUPPORTED if p90 < 0.5 else CONTRADICTED if p90 >= 0.65 else UNVERIFIABLE
        return Claim(text, "greenness", verdict, f"spectral.ndvi_p90 = {p90:g}", f"'{which}' NDVI p90 band")

    def _check_cloud(self, text: str, which: str) -> Claim:
        cloud = self.sheet.value("cloud.percentage")
        if cloud is None:
            return Claim(text, "cloud", UNVERIFIABLE, None, "no cloud fraction")
        if which == "clear":
            verdict = SUPPORTED if cloud <= 10 else CONTRADICTED if cloud > 25 else UNVERIFIABLE
        else:
            verdict = SUPPORTED if cloud >= 10 else CONTRADICTED if cloud < 3 else UNVERIFIABLE
        return Claim(text, "cloud", verdict, f"cloud.percentage = {cloud:g} %", f"'{which}' band")

    def _check_radar(self, text: str, which: str) -> Claim:
        vv = self.sheet.value("sar.vv_db")
        if vv is None:
            return Claim(text, "radar", UNVERIFIABLE, None, "no Sentinel-1")
        if which == "dark":
            verdict = SUPPORTED if vv < -13 else CONTRADICTED if vv > -10 else UNVERIFIABLE
        else:
            verdict = SUPPORTED if vv > -9 else CONTRADICTED if vv < -12 else UNVERIFIABLE
        return Claim(text, "radar", verdict, f"sar.vv_db = {vv:g} dB", f"'{which}' band")

    def _check_texture(self, text: str, which: str) -> Claim:
        std = self.sheet.value("sar.vv_std_db")
        if std is None:
            return Claim(text, "radar_texture", UNVERIFIABLE, None, "no Sentinel-1")
        # uniform: speckle alone (<= 3 dB); varied: a mixture of surfaces (>= 4 dB); the gap is undecided
        uniform = std <= 3.0
        verdict = _banded(
            uniform if which == "uniform" else std >= 4.0, std > 4.0 if which == "uniform" else uniform
        )
        return Claim(
            text, "radar_texture", verdict, f"sar.vv_std_db = {std:g} dB", f"'{which}' VV spread band"
        )

    def _osm_claims(self, m: _Masked) -> list[Claim]:
        claims = []
        count = self.sheet.value("osm.tag_count")
        for pattern, (feature, wanted) in self._patterns["osm"]:
            for match in m.finditer(pattern):
                m.take(match.start(), match.end())
                claims.append(
                    self._maybe_negate(m, match, self._check_osm(match.group(0), feature, wanted, count))
                )
        return claims

    def _check_osm(
        self, text: str, feature: str, wanted: frozenset[tuple[str, str | None]], count: Any
    ) -> Claim:
        if count is None:
            return Claim(
                text, "osm", UNVERIFIABLE, None, f"no OSM tags: nothing says whether a {feature} is there"
            )
        tags = sorted(f.name.removeprefix("osm.tag.") for f in self.sheet.with_prefix("osm.tag."))
        for tag in tags:
            key, _, value = tag.partition("=")
            if (key, value) in wanted or (key, None) in wanted:
                return Claim(text, "osm", SUPPORTED, f"osm.tag {tag}", f"a {feature} is tagged")
        if not count:
            return Claim(text, "osm", UNVERIFIABLE, "osm.tag_count = 0", "the release listed no tags")
        return Claim(
            text, "osm", CONTRADICTED, f"osm.tag_count = {count}", f"the release's tags show no {feature}"
        )

    def _check_season(self, text: str, season: str) -> Claim:
        actual = self.sheet.value("date.season")
        if actual is None or actual == "none":
            return Claim(text, "season", UNVERIFIABLE, f"date.season = {actual}", "no temperate season known")
        return Claim(
            text,
            "season",
            SUPPORTED if actual == season else CONTRADICTED,
            f"date.season = {actual}",
            "exact",
        )

    def _check_latitude_word(self, text: str, zone: str) -> Claim:
        lat = self.sheet.value("place.lat")
        if lat is None:
            return Claim(text, "latitude", UNVERIFIABLE, None, "no coordinates")
        a = abs(float(lat))
        ok = {
            "tropical": a < 23.5,
            "subarctic": 50 <= a <= 70,
            "arctic": a >= 66,
            "temperate": 23.5 <= a < 66,
        }[zone]
        return Claim(
            text, "latitude", SUPPORTED if ok else CONTRADICTED, f"place.lat = {lat:g}", f"'{zone}' zone"
        )


def _banded(supported: bool, contradicted: bool) -> Verdict:
    """A verdict from a supporting and a contradicting band with a gap between them."""
    return SUPPORTED if supported else CONTRADICTED if contradicted else UNVERIFIABLE


def _names_pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})(?:'s)?(?![\w-])")


@functools.cache
def _gazetteer_pattern() -> re.Pattern[str]:
    return _names_pattern(place_names())


@functools.cache
def _patterns() -> dict[str, list[tuple[re.Pattern[str], Any]]]:
    """The lexicon compiled once per process (compiling it per tile was a third of the verifier's time)."""
    tables: dict[str, Sequence[tuple[str, Any]]] = {
        "group": GROUP_WORDS, "quant": QUANTIFIERS, "relief": RELIEF_WORDS, "landform": LANDFORM_WORDS,
        "elev": ELEVATION_WORDS, "green": GREENNESS_WORDS, "cloud": CLOUD_WORDS, "sar": SAR_WORDS,
        "season": SEASON_WORDS, "lat": _LATITUDE_WORDS, "coast": ((COAST_WORDS, None),),
        "texture": SAR_TEXTURE_WORDS, "osm": tuple((w, (name, tags)) for w, name, tags in OSM_FEATURES),
        "shore": ((SHORE_WORDS, None),),
    }  # fmt: skip
    return {key: [(word_pattern(p), v) for p, v in table] for key, table in tables.items()}


def _gap(q: _Qualifier, mention: tuple[int, int, str, str], text: str) -> int:
    """Words between a qualifier and a mention; reaching back over "and"/"or"/a comma costs three more,
    since English qualifiers lead their noun ("forest and about 20% fields": the 20% is the fields')."""
    start, end = mention[0], mention[1]
    if q.end <= start:
        return len(re.findall(r"[\w%-]+", text[q.end : start]))
    if q.start >= end:
        between = text[end : q.start]
        barrier = 3 if re.search(r"\band\b|\bor\b|,", between) else 0
        return len(re.findall(r"[\w%-]+", between)) + barrier
    return 0


def _prefix(clauses: list[_Clause], index: int) -> str:
    sentence = clauses[index].sentence
    return "".join(c.sep + c.text for c in clauses[:index] if c.sentence == sentence) + clauses[index].sep


def _reassemble(clauses: list[_Clause], keep: list[int]) -> str:
    sentences: dict[int, str] = {}
    for i in keep:
        c = clauses[i]
        piece = c.text.strip() if c.sentence not in sentences else c.sep + c.text.strip()
        sentences[c.sentence] = sentences.get(c.sentence, "") + piece
    out = []
    for text in sentences.values():
        text = text.strip().rstrip(",;")
        if text and text[-1] not in ".!?":
            text += "."
        out.append(text[:1].upper() + text[1:])
    return " ".join(out)


def verify_caption(sheet: FactSheet, caption: str, repair: bool = False) -> Verification:
    """Convenience wrapper: ``Verifier(sheet).verify(caption, repair)``."""
    return Verifier(sheet).verify(caption, repair=repair)
