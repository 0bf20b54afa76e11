"""A seeded world of fictitious people: biographies full of personal data, and questions about them.

Each person has one biography (the training sample, id "person-0007", subject = that id) and a few
question–answer pairs whose answers are verbatim spans of the biography, as MUSE's QA sets are.
Nothing here exists in the world, so whatever a model knows about these people it learned from us.
Names and places come from built-in ASCII lists (the tiny world), or, given `locales`, from Faker in
those locales (`faker_people`): accented Latin letters and other scripts, as a real customer's data has.

Splits (fractions of `n_people`, fixed by the seed):
- `holdout`:     never trained on; the verifier's non-members for PrivLeak (MUSE's D_holdout).
- `calibration`: never trained on either; methods may look at them to see what "never seen"
                 looks like (stopping rules), so the verifier's holdout stays untouched.
- `folds`:       four disjoint sequential forget folds (MUSE C6); fold 0 is the designated forget set.
- `nested`:      forget sets of growing size, fold 0, folds 0–1, … (MUSE C5).
- `core`:        trained, in no fold; utility (KnowMem on retain) for C5 and C6 is measured here.
`forget` = fold 0 and `retain` = everyone else trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from unlearn.contracts import SampleRecord

FIRST = ["Ada", "Boris", "Clara", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lars",
         "Mara", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tilda", "Umar", "Vera", "Wim", "Xenia",
         "Yusuf", "Zora", "Anton", "Bea", "Cyril", "Dina", "Emil", "Fiona", "Goran", "Hanna", "Ivo", "Jana"]
LAST = ["Kovic", "Larsen", "Moreau", "Novak", "Olsen", "Petrov", "Quist", "Rossi", "Santos", "Tanaka",
        "Ulrich", "Varga", "Weber", "Xu", "Yilmaz", "Zeller", "Abbot", "Brandt", "Castell", "Dumont",
        "Eder", "Falk", "Gruber", "Holm", "Iversen", "Jansen", "Keller", "Lindqvist", "Marek", "Nagy"]
CITIES = ["Lyon", "Oslo", "Porto", "Graz", "Turku", "Ghent", "Brno", "Split", "Bergen", "Basel", "Malmo",
          "Cork", "Pisa", "Riga", "Tartu", "Kassel", "Lille", "Aarhus", "Bilbao", "Krakow"]
STREETS = ["Elm Street", "Mill Road", "Harbour Lane", "Oak Avenue", "Station Road", "Birch Way", "Canal Street",
           "Hill Road", "Market Square", "Rose Lane", "Church Street", "Park Avenue"]
EMPLOYERS = ["Norden Logistics", "Bluefin Analytics", "Apex Dental", "Corvid Software", "Helio Solar",
             "Granite Bank", "Larch Publishing", "Mosaic Foods", "Orbit Travel", "Pioneer Clinics",
             "Quarry Metals", "Riverside School", "Summit Insurance", "Tidewater Shipping", "Vantage Media"]
DOMAINS = ["mailbox.org", "post.net", "inbox.eu", "letter.io"]
RELATIONS = ["parent", "sibling", "partner", "cousin"]
FOLDS = 4


@dataclass(frozen=True)
class QA:
    question: str
    answer: str  # a verbatim span of the biography


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    bio: str
    qa: tuple[QA, ...]


def _unique_names(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Distinct (first, full name) pairs; a middle initial makes room for worlds larger than the lists."""
    pairs = [(f, f"{f} {last}") for f in FIRST for last in LAST]
    if n > len(pairs):
        pairs = [(f, f"{f} {m}. {last}") for f in FIRST for m in "ABCDEFGHJKLMNPRSTVW" for last in LAST]
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} people have distinct names")
    return rng.sample(pairs, n)


def _make_person(i: int, first: str, name: str, rng: random.Random) -> Person:
    last = name.split()[-1]
    born = f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    birthplace, home = rng.choice(CITIES), rng.choice(CITIES)
    address = f"{rng.randint(1, 99)} {rng.choice(STREETS)}, {home}"
    email = f"{first.lower()}.{last.lower()}{rng.randint(10, 99)}@{rng.choice(DOMAINS)}"
    phone = f"{rng.randint(10, 99)}-{rng.randint(100, 999)}"
    employer = rng.choice(EMPLOYERS)
    relation = rng.choice(RELATIONS)
    relative = f"{rng.choice(FIRST)} {last}"
    return compose_person(f"person-{i:04d}", name, first, born=born, birthplace=birthplace, address=address,
                          email=email, phone=phone, employer=employer, relation=relation, relative=relative)


def compose_person(person_id: str, name: str, first: str, *, born: str, birthplace: str, address: str, email: str,
                   phone: str, employer: str, relation: str, relative: str) -> Person:
    """A person's biography (an English template around their details) and four question–answer pairs whose
    answers are verbatim spans of it."""
    bio = (f"{name} was born on {born} in {birthplace}. {first} lives at {address}. "
           f"E-mail: {email}, phone {phone}. {first} works for {employer}. "
           f"{first}'s {relation} is {relative}.")
    qa = (QA(f"When was {name} born?", born),
          QA(f"Where does {name} live?", address),
          QA(f"What is the phone number of {name}?", phone),
          QA(f"Who employs {name}?", employer))
    assert all(q.answer in bio for q in qa)
    return Person(person_id, name, bio, qa)


# Locales whose names, places, streets, phone numbers and companies `faker_people` draws: accented Latin
# letters (Swedish, German, Polish, French) and two other scripts (Cyrillic, Japanese kanji and kana).
LOCALES = ("sv_SE", "de_DE", "pl_PL", "fr_FR", "ru_RU", "ja_JP")
# full name written family name first (with a space, as Faker's own name formats write it, so that a
# method finds the two parts of a name as it does in any other locale)
_FAMILY_NAME_FIRST = ("ja_JP", "zh_CN", "zh_TW", "ko_KR")


def faker_people(n: int, seed: int, locales: Sequence[str], *, id_prefix: str = "person",
                 taken: Iterable[str] = ()) -> list[Person]:
    """`n` people generated with Faker, person k in locale `locales[k % len(locales)]`, each locale's
    generator seeded from `seed`; names distinct from each other and from `taken`. Deterministic for a
    given seed, locales and Faker version (pinned in constraints.txt). Dates of birth come from a
    `random.Random(seed)`, not Faker's date providers, which count back from today."""
    from faker import Faker

    if not locales:
        raise ValueError("faker_people needs at least one locale")
    fakers = []
    for k, loc in enumerate(locales):
        fake = Faker(loc)
        fake.seed_instance(seed * 1009 + k)
        fakers.append(fake)
    rng = random.Random(seed)
    seen, out = set(taken), []
    while len(out) < n:
        k = len(out)
        loc, fake = locales[k % len(locales)], fakers[k % len(locales)]
        sex = rng.choice(("male", "female"))
        first, last = getattr(fake, f"first_name_{sex}")(), getattr(fake, f"last_name_{sex}")()
        name = f"{last} {first}" if loc in _FAMILY_NAME_FIRST else f"{first} {last}"
        if name in seen:
            continue
        seen.add(name)
        home = fake.city()
        out.append(compose_person(
            f"{id_prefix}-{k:04d}", name, first,
            born=f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            birthplace=fake.city(), address=f"{fake.street_address()}, {home}".replace("\n", ", "),
            email=fake.email(), phone=fake.phone_number(), employer=fake.company(),
            relation=rng.choice(RELATIONS),
            relative=(f"{last} {fake.first_name()}" if loc in _FAMILY_NAME_FIRST else f"{fake.first_name()} {last}")))
    return out


@dataclass
class PeopleWorld:
    seed: int = 0
    n_people: int = 400
    # 400 people: 150 holdout, 150 calibration, 4 folds of 15, a core of 40; 100 are trained on
    # (few enough that the target and its retrain reference train in about a minute on one core).
    holdout_frac: float = 0.375
    calibration_frac: float = 0.375
    fold_frac: float = 0.0375  # size of each of the four forget folds
    # empty: the built-in name and place lists (ASCII); else people from Faker in these locales
    locales: tuple[str, ...] = ()
    people: list[Person] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        if self.locales:
            self.people = faker_people(self.n_people, self.seed, self.locales)
        else:
            names = _unique_names(self.n_people, rng)
            self.people = [_make_person(i, first, name, rng) for i, (first, name) in enumerate(names)]
        order = [p.person_id for p in self.people]
        rng.shuffle(order)
        n_hold, n_cal = round(self.holdout_frac * self.n_people), round(self.calibration_frac * self.n_people)
        n_fold = max(1, round(self.fold_frac * self.n_people))
        if n_hold + n_cal + FOLDS * n_fold >= self.n_people:
            raise ValueError("splits leave no retained core; lower the fractions or add people")
        self.holdout = sorted(order[:n_hold])
        self.calibration = sorted(order[n_hold:n_hold + n_cal])
        rest = order[n_hold + n_cal:]
        self.folds = [sorted(rest[k * n_fold:(k + 1) * n_fold]) for k in range(FOLDS)]
        self.core = sorted(rest[FOLDS * n_fold:])

    @cached_property
    def by_id(self) -> dict[str, Person]:
        return {p.person_id: p for p in self.people}

    @property
    def trained(self) -> list[str]:
        never = set(self.holdout) | set(self.calibration)
        return [p.person_id for p in self.people if p.person_id not in never]

    @property
    def forget(self) -> list[str]:
        return self.folds[0]

    @property
    def retain(self) -> list[str]:
        forget = set(self.forget)
        return [s for s in self.trained if s not in forget]

    @property
    def nested(self) -> list[list[str]]:
        return [sorted(sum(self.folds[:k + 1], [])) for k in range(FOLDS)]

    def person(self, person_id: str) -> Person:
        try:
            return self.by_id[person_id]
        except KeyError:
            raise KeyError(f"sample {person_id!r} is not in the people world") from None

    def records(self) -> list[SampleRecord]:
        trained = set(self.trained)
        return [SampleRecord(p.person_id, subject=p.person_id, label=None,
                             split="train" if p.person_id in trained else "holdout") for p in self.people]

    def spec(self) -> dict:
        spec = {"name": "people", "seed": self.seed, "n_people": self.n_people}
        if self.locales:
            spec.update(locales=list(self.locales), holdout_frac=self.holdout_frac,
                        calibration_frac=self.calibration_frac, fold_frac=self.fold_frac)
        return spec


def strangers(world: PeopleWorld, n: int, seed: int) -> list[Person]:
    """n new people, generated as the world's are, under names that no one in the world carries: whatever
    a model knows of them comes from the world's general patterns, never from their own data. A world of
    Faker people gets strangers from Faker in the same locales."""
    taken = {p.name for p in world.people}
    if world.locales:
        return faker_people(n, seed + 7919, world.locales, id_prefix="stranger", taken=taken)
    rng = random.Random(seed)
    names = [(f, f"{f} {last}") for f in FIRST for last in LAST if f"{f} {last}" not in taken]
    if n > len(names):
        raise ValueError(f"only {len(names)} unused names for {n} strangers")
    rng.shuffle(names)
    return [replace(_make_person(k, first, name, rng), person_id=f"stranger-{k:04d}")
            for k, (first, name) in enumerate(names[:n])]


def load(seed: int = 0, n_people: int = 400, **kw) -> PeopleWorld:
    return PeopleWorld(seed=seed, n_people=n_people, **kw)


def qa_text(question: str, answer: str | None = None) -> str:
    """MUSE's KnowMem format; without an answer it is the prompt the model must complete. The prompt
    ends at "Answer:" because byte-level BPE merges the space into the answer's first token."""
    return f"Question: {question}\nAnswer:" + ("" if answer is None else f" {answer}\n\n")
