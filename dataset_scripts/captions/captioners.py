"""Captioners: propose candidate captions for one tile from its fact sheet.

Three interchangeable proposers share one method, ``propose(sheet, k, seed) -> list[Candidate]``:

* :class:`TemplateCaptioner` (the default): a small grammar over the fact sheet, deterministic for a
  seed, writing one or two natural sentences in the style of the spec ("A large solar panel farm stretches
  across the flat land, surrounded by patches of green fields and brown earth.") with measured
  quantities where they help. It writes only with words of :mod:`.lexicon`, the verifier's vocabulary,
  so every claim it makes can be checked.
* :class:`HFCaptioner`: any local causal language model (a folder ``transformers`` can load), prompted
  with the fact sheet only; it sees no pixels, so everything it says beyond the sheet is a hallucination
  the verifier has to catch.
* :class:`OpenAICaptioner`: the same prompt sent to an OpenAI-compatible ``/v1/chat/completions``
  endpoint (a served model), with a per-request timeout and retries with backoff.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from .gazetteer import COUNTRIES
from .lexicon import FRACTION_WORDS, GROUPS, concept_share
from .orchestrator import FactSheet

SYSTEM_PROMPT = (
    "You caption satellite image tiles for a remote-sensing dataset. Write one or two natural sentences "
    "describing what a person would see in the tile. Use only the facts listed; do not invent places, "
    "numbers or land cover. Mention the dominant land cover, water, terrain and, where useful, the place "
    "and season."
)


@dataclass
class Candidate:
    """One proposed caption and who proposed it (``template``, ``hf:<path>``, ``openai:<url>``)."""

    text: str
    source: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Captioner(Protocol):
    """Anything that proposes ``k`` captions for a fact sheet."""

    name: str

    def propose(self, sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]: ...


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"the number of candidates must be a positive integer, got {k!r}")


def build_prompt(sheet: FactSheet, max_facts: int = 24) -> str:
    """The user message for a language model: the tile's most salient facts, then the request."""
    salient = {f.name for f in sheet.salient(max_facts)}
    lines = [
        line
        for line, f in zip(
            sheet.to_text().splitlines(), sorted(sheet, key=lambda f: (-f.salience, f.name)), strict=True
        )
        if f.name in salient
    ]
    return "Facts about the tile:\n" + "\n".join(lines) + "\n\nCaption:"


def clean_generation(text: str, max_sentences: int = 2, max_words: int = 60) -> str:
    """Keep the first sentences of a model's output, on one line, without quotes or list markers."""
    text = re.sub(r"\s+", " ", text.replace("\n", " ")).strip().strip("\"'` ").lstrip("-*• ")
    sentences = re.split(r"(?<=[.!?])\s+", text)
    text = " ".join(sentences[:max_sentences])
    words = text.split()
    return " ".join(words[:max_words])


# ------------------------------------------------------------------------------------------------------
# Template captioner


_NOUNS: dict[str, tuple[str, ...]] = {
    "water": ("open water", "water"),
    "trees": ("forest", "woodland", "tree cover", "trees"),
    "open_vegetation": ("grassland", "open rangeland", "grass and scrub"),
    "wetland": ("wetland", "marsh"),
    "crops": ("cropland", "farmland", "cultivated fields", "fields"),
    "built": ("buildings", "built-up land", "scattered houses"),
    "bare": ("bare ground", "bare soil", "exposed soil"),
    "snow": ("snow and ice", "snow", "snow cover"),
    "vegetation": ("vegetation", "vegetated land"),
    "unvegetated": ("bare or built-up ground", "unvegetated ground"),
}
#: the groups the spectral classes measure directly (see the verifier's spectral ranges)
_SPECTRAL_GROUPS = ("vegetation", "water", "snow", "unvegetated")
#: an interval of spectral shares wider than this is described in words, not with a number
SPECTRAL_NUMBER_WIDTH = 14.0
_URBAN_NOUNS = ("built-up land", "urban land", "buildings and roads", "town streets and buildings")
_TERRAIN_ADJ = {
    "flat": ("flat", "level", "flat, low-relief"),
    "gentle": ("gently rolling", "undulating"),
    "hilly": ("hilly", "rolling, hilly"),
    "mountainous": ("mountainous", "rugged, mountainous"),
}
NEAR_PLACE_KM = 25.0  # a caption says "near X" only when X is this close (the gazetteer's nearest can be far)
_SIDE_WORDS = {"north": "northern", "south": "southern", "west": "western", "east": "eastern"}
_DISPLAY_GROUPS = ("water", "trees", "open_vegetation", "wetland", "crops", "built", "bare", "snow")


def share_phrase(share: float, rng: random.Random) -> str:
    """A measured share in words a person would use: "about a third", "about 40%", "nearly all"."""
    if share >= 99.5:
        return rng.choice(("all", "nearly all"))
    if share >= 95:
        return rng.choice(("nearly all", "almost all"))
    close = [(abs(v - share), w) for w, v in FRACTION_WORDS.items() if not w.startswith("one ")]
    gap, word = min(close)
    approx = rng.choice(("about", "roughly", "around", "about"))
    if gap <= 4 and rng.random() < 0.7:
        return f"{approx} {word}"
    return f"{approx} {int(5 * round(share / 5))}%" if share >= 7.5 else f"{approx} {round(share):d}%"


def _elevation_phrase(sheet: FactSheet, rng: random.Random) -> str | None:
    mean = sheet.value("elevation.mean")
    if mean is None:
        return None
    lo = float(sheet.value("elevation.min"))
    if mean >= 600:
        rounded = int(50 * round(mean / 50)) if mean >= 1000 else int(10 * round(mean / 10))
        return rng.choice(
            (f"at about {rounded:,} m above sea level", f"some {rounded:,} m up", f"at roughly {rounded:,} m")
        )
    if lo <= 20 and mean <= 30:
        return rng.choice(("just above sea level", "near sea level"))
    if mean >= 100:
        return f"at about {int(10 * round(mean / 10))} m"
    return None


class TemplateCaptioner:
    """A grounded grammar captioner, deterministic for a seed (candidate ``i`` uses ``seed + i``)."""

    name = "template"

    def propose(self, sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]:
        _check_k(k)
        out: list[Candidate] = []
        seen: set[str] = set()
        attempt = 0
        while len(out) < k and attempt < 4 * k:
            # str seeds hash with SHA-512 in `random`, so this is stable across processes and platforms
            rng = random.Random(f"{seed}:{sheet.tile_id}:{attempt}")
            text = self.caption(sheet, rng)
            if text not in seen or attempt >= 2 * k:
                seen.add(text)
                out.append(Candidate(text, self.name, seed + attempt))
            attempt += 1
        return out

    def caption(self, sheet: FactSheet, rng: random.Random) -> str:
        spectral = not sheet.product_layers() and bool(sheet.cover("spectral"))
        groups = _spectral_groups(sheet) if spectral else self._groups(sheet)
        lead = self._spectral_lead(sheet, groups, rng) if spectral and groups else None
        if not groups or (spectral and lead is None):
            return self._terrain_only(sheet, rng)
        if spectral:
            first = lead or ""
            rest = self._spectral_secondary(sheet, groups[1:], rng)
        else:
            first = self._lead(sheet, groups, rng)
            rest = self._secondary(sheet, groups[0][0], groups[1:], rng)
        place, when, relief = self._context_bits(sheet, rng)
        if (
            (place or when)
            and not first.startswith(("On ", "Across ", "In ", "A ", "An "))
            and rng.random() < 0.4
        ):
            # sometimes the setting leads: "In Denmark, green cropland covers most of this level plain."
            opener, place, when = (
                (place, "", when) if place and (not when or rng.random() < 0.5) else (when, place, "")
            )
            first = f"{opener[0].upper()}{opener[1:]}, {first[0].lower()}{first[1:]}"
        sentence1 = first + (", " + rest if rest else "") + "."
        sentence2 = self._context(place, when, relief, rng)
        return sentence1 if not sentence2 else f"{sentence1} {sentence2}"

    # -- pieces --------------------------------------------------------------------------------------
    @staticmethod
    def _groups(sheet: FactSheet) -> list[tuple[str, float]]:
        cover = sheet.cover()
        shares = [(g, concept_share(cover, g)) for g in _DISPLAY_GROUPS if g in GROUPS]
        if not cover and sheet.value("water.percentage") is not None:
            shares = [("water", float(sheet.value("water.percentage")))]
        elif not cover and sheet.value("sar.water_percentage") is not None:
            shares = [("water", float(sheet.value("sar.water_percentage")))]  # radar only: nothing optical
        return sorted([(g, s) for g, s in shares if s >= 3.0], key=lambda gs: (-gs[1], gs[0]))

    @staticmethod
    def _noun(sheet: FactSheet, group: str, share: float, rng: random.Random) -> str:
        if group == "built" and share >= 10:
            return rng.choice(_URBAN_NOUNS)
        if group == "water" and sheet.value("water.coastal") is True:
            return rng.choice(("open water", "the sea", "sea water"))
        if group == "bare" and sheet.value("water.coastal") is True:
            return rng.choice(("sand and bare ground", "bare ground", "sandy ground"))
        noun = rng.choice(_NOUNS[group])
        state = sheet.value("greenness.state")
        if (
            group in ("crops", "open_vegetation", "trees", "vegetation")
            and state == "lush"
            and rng.random() < 0.5
        ):
            noun = f"{rng.choice(('green', 'lush'))} {noun}"
        elif group in ("crops", "open_vegetation") and state == "sparse" and rng.random() < 0.6:
            noun = f"{rng.choice(('dry', 'brown', 'parched'))} {noun}"
        return noun

    @staticmethod
    def _landscape(sheet: FactSheet, rng: random.Random) -> str:
        relief = sheet.value("terrain.relief_class")
        adj = rng.choice(_TERRAIN_ADJ[relief]) if relief else ""
        if sheet.value("water.coastal") is True:
            noun = rng.choice(("coast", "stretch of coast", "coastline"))
        elif sheet.value("elevation.class") == "highland":
            noun = rng.choice(
                ("highland", "plateau", "upland") if relief in ("flat", "gentle") else ("highland", "upland")
            )
        elif sheet.value("elevation.class") == "lowland" and relief in ("flat", "gentle"):
            noun = rng.choice(("lowland", "plain", "low-lying plain"))
        else:
            noun = rng.choice(("landscape", "countryside", "terrain"))
        return f"{adj} {noun}".strip()

    def _lead(self, sheet: FactSheet, groups: list[tuple[str, float]], rng: random.Random) -> str:
        group, share = groups[0]
        noun = self._noun(sheet, group, share, rng)
        land = self._landscape(sheet, rng)
        elevation = _elevation_phrase(sheet, rng) if rng.random() < 0.8 else None
        where = f" {elevation}" if elevation and sheet.value("elevation.mean", 0) >= 600 else ""
        art, verb = _article(land), partial(_verb, noun)
        if share >= 97:
            options = [
                f"{art.capitalize()} {land}{where} lies under an unbroken blanket of {noun}",
                f"{noun.capitalize()} {verb('covers')} the entire tile, {art} {land}{where}",
                f"An unbroken expanse of {noun} fills this {land}{where}",
                f"Nothing but {noun} across this {land}{where}",
                f"{noun.capitalize()} {verb('stretches')} unbroken across {art} {land}{where}",
            ]
        elif share >= 60:
            options = [
                f"{noun.capitalize()} {verb('covers')} most of this {land}{where}",
                f"{noun.capitalize()} {verb('fills')} {share_phrase(share, rng)} of this {land}{where}",
                f"Mostly {noun}, this {land}{where} is {share_phrase(share, rng)} {_short(group)}",
                f"{art.capitalize()} {land}{where} given over mainly to {noun}",
                f"Across this {land}{where}, {noun} {verb('dominates')} the view",
                f"{noun.capitalize()} {verb('makes')} up {share_phrase(share, rng)} of {art} {land}{where}",
            ]
        else:
            options = [
                f"{share_phrase(share, rng).capitalize()} of this {land}{where} is {noun}",
                f"{noun.capitalize()} {verb('takes')} up {share_phrase(share, rng)} of {art} {land}{where}",
                f"{art.capitalize()} {land}{where} where {noun} {verb('covers')} {share_phrase(share, rng)} of the tile",
                f"On this {land}{where}, {noun} {verb('accounts')} for {share_phrase(share, rng)} of the ground",
                f"{noun.capitalize()}, {share_phrase(share, rng)} of the tile, {verb('spreads')} over {art} {land}{where}",
            ]
        side = sheet.value("water.side")
        if group == "water" and side:
            options.append(
                f"{noun.capitalize()} {_verb(noun, 'fills')} the {_SIDE_WORDS[side]} side of this {land}, "
                f"{share_phrase(share, rng)} of the tile"
            )
        return rng.choice(options)

    def _spectral_lead(
        self, sheet: FactSheet, groups: list[tuple[str, float]], rng: random.Random
    ) -> str | None:
        """The lead clause from the spectral classes, in words that hold over their whole range."""
        group, _ = groups[0]
        lo, hi = _spectral_range(sheet, group)
        noun = self._noun(sheet, group, lo, rng)
        land = self._landscape(sheet, rng)
        art, verb = _article(land), partial(_verb, noun)
        if lo >= 97:
            return rng.choice(
                (f"{art.capitalize()} {land} lies under an unbroken blanket of {noun}",
                 f"{noun.capitalize()} {verb('covers')} the entire tile, {art} {land}",
                 f"An unbroken expanse of {noun} fills this {land}",
                 f"Nothing but {noun} across this {land}")
            )  # fmt: skip
        if lo >= 40:
            return rng.choice(
                (f"{noun.capitalize()} {verb('covers')} most of this {land}",
                 f"{art.capitalize()} {land} given over mainly to {noun}",
                 f"Across this {land}, {noun} {verb('dominates')} the view",
                 f"{noun.capitalize()} {verb('fills')} most of {art} {land}")
            )  # fmt: skip
        if hi - lo <= SPECTRAL_NUMBER_WIDTH and lo >= 3:
            share = share_phrase((lo + hi) / 2, rng)
            return rng.choice(
                (f"{noun.capitalize()} {verb('takes')} up {share} of {art} {land}",
                 f"{share.capitalize()} of this {land} is {noun}",
                 f"On this {land}, {noun} {verb('accounts')} for {share} of the ground")
            )  # fmt: skip
        if lo >= 15:
            return rng.choice(
                (f"Extensive {noun} {verb('spreads')} over this {land}",
                 f"A large expanse of {noun} on {art} {land}",
                 f"Broad stretches of {noun} across {art} {land}")
            )  # fmt: skip
        return None

    def _spectral_secondary(
        self, sheet: FactSheet, groups: list[tuple[str, float]], rng: random.Random
    ) -> str:
        pieces = []
        for group, _ in groups[:2]:
            lo, hi = _spectral_range(sheet, group)
            noun = self._noun(sheet, group, lo, rng)
            if hi - lo <= SPECTRAL_NUMBER_WIDTH and lo >= 7.5:
                pieces.append(f"{share_phrase((lo + hi) / 2, rng)} {noun}")
            elif lo >= 0.5 and hi <= 45:
                pieces.append(f"{rng.choice(('small patches of', 'scattered', 'pockets of'))} {noun}")
            elif lo >= 15:
                pieces.append(f"extensive {noun}")
        if not pieces:
            return ""
        connectors = ("with ", "alongside ", "mixed with ", "broken by ", "interspersed with ", "beside ")
        return rng.choice(connectors) + " and ".join(pieces)

    def _secondary(
        self, sheet: FactSheet, lead: str, groups: list[tuple[str, float]], rng: random.Random
    ) -> str:
        pieces = []
        for group, share in groups[:2]:
            noun = self._noun(sheet, group, share, rng)
            if share < 12:
                pieces.append(
                    f"{rng.choice(('small patches of', 'scattered', 'pockets of', 'a little'))} {noun}"
                )
            elif rng.random() < 0.5 or noun.startswith("the "):
                pieces.append(f"{noun} ({share_phrase(share, rng)})")
            else:
                pieces.append(f"{share_phrase(share, rng)} {noun}")
        water_named = lead == "water" or any(g == "water" for g, _ in groups[:2])
        if sheet.value("water.side") and not water_named and sheet.value("water.percentage", 0) >= 3:
            pieces.append(f"open water along the {_SIDE_WORDS[sheet.value('water.side')]} side")
        if not pieces:
            return ""
        joined = pieces[0] if len(pieces) == 1 else ", ".join(pieces[:-1]) + " and " + pieces[-1]
        connectors = ["with ", "alongside ", "mixed with ", "broken by ", "interspersed with ", "beside "]
        if all(share < 30 for _, share in groups[:2]):
            connectors.append("dotted with ")  # a minor-share word in the verifier's lexicon
        return rng.choice(connectors) + joined

    def _context_bits(self, sheet: FactSheet, rng: random.Random) -> tuple[str, str, str]:
        """Optional place, date and relief phrases ("in Chile", "in autumn", "with about 150 m of relief")."""
        place = when = relief_bit = ""
        country, region, near = (sheet.value(f"place.{k}") for k in ("country", "region", "nearest_place"))
        country = _country_name(sheet) or country
        close = near and float(sheet.value("place.distance_km", 1e9)) <= NEAR_PLACE_KM
        if country and rng.random() < 0.85:
            if close and rng.random() < 0.4:
                place = f"near {near}, {country}"
            elif region and rng.random() < 0.6:
                place = f"in {region}" if country in str(region) else f"in {region}, {country}"
            else:
                place = f"in {country}"
        month, year, season = sheet.value("date.month"), sheet.value("date.year"), sheet.value("date.season")
        if month and rng.random() < 0.75:
            when = rng.choice((f"in {month.capitalize()} {year}", f"in {month.capitalize()}"))
            if season and season != "none" and rng.random() < 0.6:
                when = rng.choice(
                    (
                        f"in {season}",
                        f"in {season}, {month.capitalize()} {year}",
                        f"on {_article(season)} {season} day",
                        f"in the {season} of {year}",
                    )
                )
        relief = sheet.value("terrain.relief")
        if relief is not None and rng.random() < 0.35:
            relief_bit = f"with about {int(max(5, 5 * round(relief / 5)))} m of relief"
        extras = [b for b in (_osm_phrase(sheet, rng), _radar_phrase(sheet, rng)) if b]
        if extras and not relief_bit and rng.random() < 0.7:
            relief_bit = rng.choice(extras)
        return place, when, relief_bit

    @staticmethod
    def _context(place: str, when: str, relief_bit: str, rng: random.Random) -> str:
        bits = [b for b in (place, when, relief_bit) if b]
        if not bits:
            return ""
        style = rng.random()
        if bits == [relief_bit] and relief_bit.endswith(" of relief"):
            return f"The ground varies by {relief_bit.removeprefix('with ').removesuffix(' of relief')} across the tile."
        if bits == [relief_bit]:
            return f"The tile is seen {relief_bit}."
        if style < 0.4:
            return f"{rng.choice(('Seen', 'Captured', 'Imaged', 'Pictured', 'Observed'))} {', '.join(bits)}."
        if style < 0.65 and place:
            tail = "".join(f", {b}" for b in ((f"imaged {when}" if when else ""), relief_bit) if b)
            return f"The tile lies {place}{tail}."
        lead = rng.choice(("The scene was recorded", "This view was taken", "The image was acquired"))
        return f"{lead} {', '.join(bits)}."

    def _terrain_only(self, sheet: FactSheet, rng: random.Random) -> str:
        land = self._landscape(sheet, rng)
        elevation = _elevation_phrase(sheet, rng)
        text = f"{_article(land).capitalize()} {land}" + (f" {elevation}" if elevation else "") + "."
        context = self._context(*self._context_bits(sheet, rng), rng)
        return f"{text} {context}".strip()


def _spectral_range(sheet: FactSheet, group: str) -> tuple[float, float]:
    """The (lo, hi) share the spectral classes give a directly measured group (the verifier's rule)."""
    cover = sheet.cover("spectral")
    other = cover.get("other", 0.0)
    if group == "vegetation":
        return cover.get("vegetation", 0.0), min(100.0, cover.get("vegetation", 0.0) + other)
    if group == "unvegetated":
        unveg = cover.get("bare", 0.0) + cover.get("built", 0.0)
        return unveg, min(100.0, unveg + other)
    return cover.get(group, 0.0), cover.get(group, 0.0)


def _spectral_groups(sheet: FactSheet) -> list[tuple[str, float]]:
    ranked = [(g, _spectral_range(sheet, g)) for g in _SPECTRAL_GROUPS]
    return sorted([(g, lo) for g, (lo, hi) in ranked if hi >= 3.0], key=lambda gs: (-gs[1], gs[0]))


#: OSM feature -> how a caption names it (a word of the verifier's OSM lexicon)
_OSM_NOUNS = {
    "solar farm": "a solar farm", "wind farm": "a wind farm", "marina": "a marina", "harbour": "a harbour",
    "motorway": "a motorway", "railway": "a railway line", "airport": "an airfield", "golf course": "a golf course",
    "quarry": "a quarry", "vineyard": "vineyards", "orchard": "orchards", "cemetery": "a cemetery",
    "stadium": "a sports pitch", "power line": "a power line", "dam": "a dam", "canal": "a canal",
    "bridge": "a bridge", "pier": "a pier", "lighthouse": "a lighthouse", "industrial area": "an industrial area",
    "nature reserve": "a nature reserve",
}  # fmt: skip


def _osm_phrase(sheet: FactSheet, rng: random.Random) -> str:
    """A tagged feature the verifier can check ("with a marina nearby"), or ""."""
    from .lexicon import OSM_FEATURES

    tags = {f.name.removeprefix("osm.tag.").partition("=")[::2] for f in sheet.with_prefix("osm.tag.")}
    found = [
        name
        for _, name, wanted in OSM_FEATURES
        if any((k, v) in wanted or (k, None) in wanted for k, v in tags)
    ]
    if not found:
        return ""
    noun = _OSM_NOUNS[rng.choice(found)]
    return rng.choice(
        (f"with {noun} nearby", f"close to {noun}", f"with {noun} in the area", f"not far from {noun}")
    )


def _radar_phrase(sheet: FactSheet, rng: random.Random) -> str:
    """Radar character and texture in words the verifier checks, only where the measure is clear."""
    vv, std = sheet.value("sar.vv_db"), sheet.value("sar.vv_std_db")
    bits = []
    if vv is not None and vv < -13:
        bits.append(rng.choice(("low radar backscatter", "weak radar backscatter")))
    elif vv is not None and vv > -9:
        bits.append(rng.choice(("strong radar backscatter", "high radar backscatter")))
    if std is not None and std <= 3.0:
        bits.append("a uniform radar texture")
    elif std is not None and std >= 4.0:
        bits.append("a varied radar texture")
    return f"with {' and '.join(bits)}" if bits else ""


def _country_name(sheet: FactSheet) -> str | None:
    """The common English name of the sheet's country ("Tanzania", not "Tanzania, United Republic of")."""
    entry = COUNTRIES.get(str(sheet.value("place.country_code") or "").upper())
    return entry[0] if entry else None


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _verb(noun: str, verb: str) -> str:
    """Agree a third-person verb with its subject: "fields cover", "forest covers"."""
    plural = " and " in noun or (noun.endswith("s") and not noun.endswith("ss"))
    return verb[:-1] if plural else verb


def _short(group: str) -> str:
    return {
        "vegetation": "vegetated",
        "unvegetated": "unvegetated",
        "water": "water",
        "trees": "forest",
        "open_vegetation": "grassland",
        "wetland": "wetland",
        "crops": "cropland",
        "built": "built-up",
        "bare": "bare ground",
        "snow": "snow",
    }[group]


# ------------------------------------------------------------------------------------------------------
# Language-model captioners


class HFCaptioner:
    """Captions from a local causal LM (any folder ``AutoModelForCausalLM`` loads), prompted with the sheet.

    The model and tokenizer load lazily on first use, from local files only, so constructing a captioner
    is cheap and never touches the network.
    """

    def __init__(
        self,
        path: str | Path,
        max_new_tokens: int = 60,
        temperature: float = 0.8,
        top_p: float = 0.95,
        device: str = "cpu",
    ):
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ValueError(
                f"expected a local model folder with config.json for the hf captioner, found {self.path}"
            )
        self.name = f"hf:{self.path}"
        self.max_new_tokens, self.temperature, self.top_p, self.device = (
            max_new_tokens,
            temperature,
            top_p,
            device,
        )
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True)
        self._model = model.to(self.device).eval()

    def _prompt_ids(self, sheet: FactSheet) -> Any:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": build_prompt(sheet)},
            ]
            return tok.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        return tok(f"{SYSTEM_PROMPT}\n\n{build_prompt(sheet)}", return_tensors="pt")

    def propose(self, sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]:
        _check_k(k)
        import torch

        self._load()
        inputs = {key: v.to(self.device) for key, v in self._prompt_ids(sheet).items()}
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self._model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=k,
                pad_token_id=pad,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        texts = self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [Candidate(clean_generation(t), self.name, seed + i) for i, t in enumerate(texts)]


class EndpointError(RuntimeError):
    """The endpoint kept failing (or refused the request); the message says how."""


class OpenAICaptioner:
    """Captions from an OpenAI-compatible ``/v1/chat/completions`` endpoint, one request per candidate.

    Timeouts, connection errors, 429 and 5xx answers are retried up to ``retries`` times with exponential
    backoff (``backoff * 2**attempt`` seconds); other 4xx answers fail at once, as retrying cannot help.
    The API key comes from ``api_key`` or ``$OPENAI_API_KEY`` and is optional (local servers need none).
    """

    def __init__(
        self,
        url: str,
        model: str = "default",
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        temperature: float = 0.8,
        max_tokens: int = 96,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL for the openai captioner, found {url!r}")
        if timeout <= 0 or retries < 0:
            raise ValueError(
                f"expected timeout > 0 and retries >= 0, found timeout={timeout}, retries={retries}"
            )
        self.url = _completions_url(url)
        self.name = f"openai:{url}"
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._sleep = sleep
        self.attempts = 0  # requests sent, for monitoring and tests

    def propose(self, sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]:
        _check_k(k)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": build_prompt(sheet)},
        ]
        out = []
        for i in range(k):
            body = {
                "model": self.model,
                "messages": messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "seed": seed + i,
            }
            answer = self._post(body)
            try:
                text = answer["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise EndpointError(
                    f"expected choices[0].message.content in the answer of {self.url}, found {answer!r:.200}"
                ) from None
            out.append(Candidate(clean_generation(str(text)), self.name, seed + i))
        return out

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            self.attempts += 1
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500:
                    raise EndpointError(
                        f"{self.url} refused the request: HTTP {err.code} {err.read()[:200]!r}"
                    ) from None
                last = f"HTTP {err.code}"
            except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except json.JSONDecodeError as err:
                last = f"answer is not JSON ({err})"
        raise EndpointError(f"{self.url} failed {self.retries + 1} times; last error: {last}")


def _completions_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def make_captioner(spec: str, **kwargs: Any) -> Captioner:
    """``template`` | ``hf:PATH`` | ``openai:URL`` -> a captioner (the command line's ``--captioner``)."""
    if spec == "template":
        return TemplateCaptioner()
    if spec.startswith("hf:"):
        return HFCaptioner(spec[3:], **kwargs)
    if spec.startswith("openai:"):
        return OpenAICaptioner(spec[7:], **kwargs)
    raise ValueError(f"expected a captioner 'template', 'hf:PATH' or 'openai:URL', found {spec!r}")


def propose_all(captioners: Sequence[Captioner], sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]:
    """``k`` candidates from each captioner, in order."""
    return [c for captioner in captioners for c in captioner.propose(sheet, k, seed)]
