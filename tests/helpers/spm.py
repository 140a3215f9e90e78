"""Generated English documents and a PEGASUS-layout SentencePiece model (no downloads).

Used by the tokenizer tests and by benchmarks/tokenizer_speed.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import sentencepiece

SUBJECTS = [
    "The committee", "Our research group", "The city council", "A small team of engineers", "The author",
    "Most economists", "The hospital's board", "Several witnesses", "The new government", "Local farmers",
    "The defending champion", "An independent review", "The museum's curator", "Young researchers",
    "The central bank", "A spokesperson for the company", "The court", "Many residents of the valley",
]
VERBS = [
    "announced", "rejected", "carefully examined", "has repeatedly questioned", "will publish", "approved",
    "described", "could not explain", "quietly supported", "measured", "criticised", "is expected to review",
    "summarised", "compared", "recommended", "observed",
]
OBJECTS = [
    "the annual budget for public transport", "a detailed plan to reduce emissions by 2030",
    "the results of the clinical trial", "an unusual pattern in the survey data", "the proposal to merge both schools",
    "the long-term effects of the drought", "a report on housing prices in the northern districts",
    "the decision to postpone the election", "the findings of the previous study",
    "the cost of repairing the old bridge", "a new method for estimating rainfall",
    "the terms of the trade agreement", "the number of patients admitted last winter",
]
TAILS = [
    "after months of debate", "despite strong opposition", "according to people familiar with the matter",
    "in a statement released on Monday", "without giving further details", "for the second time this year",
    "while the investigation continues", "before the end of the financial year", "as prices kept rising",
    "in front of a crowded room", "with the support of three universities", "although the evidence is limited",
]
FOLLOW_UPS = [
    "Critics said the figures were incomplete.", "The decision surprised many observers.",
    "Nobody expects a quick resolution.", "Further studies are planned for next spring.",
    "Officials declined to comment on the timing.", "It's the first time that this has happened since 1998.",
    "The measurements were repeated three times (see Table 2).", "Costs rose by 12.5% compared with last year.",
    "\"We didn't anticipate this,\" one member said.", "The data, however, tell a different story.",
    "Questions remain: who will pay, and when?", "Results differ widely between regions; the north fared worst.",
]
ADJECTIVES = (
    "economic social political national local regional public private natural environmental financial medical "
    "historical cultural scientific technical industrial agricultural urban rural coastal northern southern eastern "
    "western ancient modern recent significant substantial considerable remarkable unexpected gradual rapid steady "
    "temporary permanent official informal independent international European African Asian American digital "
    "chemical biological physical mental genetic statistical theoretical experimental practical careful detailed "
    "preliminary comprehensive limited reliable accurate complex simple ordinary difficult obvious relevant"
).split()
NOUNS = (
    "analysis approach area argument article assessment association authority behaviour benefit building campaign "
    "capacity century challenge change character climate community company competition concept condition conference "
    "context contract control council country culture customer damage debate decade demand department design "
    "development difference discussion disease distance economy education effect election employment energy "
    "environment evidence examination experience experiment explanation factor failure family feature figure "
    "forest framework function funding generation growth hospital household hypothesis income industry influence "
    "information infrastructure institution interest investment island journal knowledge landscape language "
    "legislation level literature majority management market material measurement memory method migration "
    "minister model movement network newspaper observation opportunity organisation outcome parliament "
    "participant performance period philosophy policy population pressure principle priority procedure process "
    "production programme property protection publication quality railway reaction region regulation relationship "
    "reputation requirement resource response responsibility revenue river sample scheme season sector security "
    "sequence settlement shortage signal society species standard strategy structure subject supply survey "
    "system technology temperature tension territory theory threat tradition treatment trend university variation "
    "village violence volume weather welfare"
).split()
SYLLABLES = "ka ren do mi sto val ber lin gra ton el mar qu ist ov ham fel ros ad ner wick tal bor ess un".split()
UNICODE_SENTENCES = [
    "The café near the Rhône served crème brûlée to the naïve résumé reviewers.",
    "Prices rose — sharply — during the 2021–2022 winter; see pp. 14–16.",
    "Delegates from 東京 and 北京 met in São Paulo and Zürich.",
    "The chart (🙂 for growth, 📉 for decline) was shared widely… “quoted” and ‘quoted’ again.",
    "Señora Müller paid €1,200 and £300 for the Ångström-level instrument.",
]


def english_paragraphs(count: int, seed: int = 0, unicode_every: int = 4) -> list[str]:
    """`count` paragraphs of plausible English news/science prose, reproducible from `seed`."""
    rng = random.Random(seed)
    paragraphs = []
    for index in range(count):
        sentences = []
        for _ in range(rng.randint(3, 6)):
            subject, verb, tail = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(TAILS)
            if rng.random() < 0.5:
                thing = rng.choice(OBJECTS)
            else:
                thing = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} of the {rng.choice(NOUNS)}s"
            if rng.random() < 0.3:
                tail = f"in {_name(rng)}, said {rng.choice(['Dr.', 'Ms.', 'Mr.', 'Prof.'])} {_name(rng)}"
            sentences.append(f"{subject} {verb} {thing} {tail}.")
            if rng.random() < 0.5:
                sentences.append(rng.choice(FOLLOW_UPS))
        if unicode_every and index % unicode_every == 0:
            sentences.insert(rng.randint(0, len(sentences)), rng.choice(UNICODE_SENTENCES))
        paragraphs.append(" ".join(sentences))
    return paragraphs


def _name(rng: random.Random) -> str:
    """An invented proper name, so the corpus has rare words that split into sub-word pieces."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def long_document(pages: int, seed: int = 0) -> str:
    """A multi-page document: titled sections, paragraphs split by blank lines, a few tabs and double spaces."""
    rng = random.Random(seed)
    sections = []
    for page in range(pages):
        body = "\n\n".join(english_paragraphs(6, seed=seed * 1000 + page))
        body = body.replace(". The", ".  The", 2).replace(", ", ",\t", 1)
        sections.append(f"{page + 1}. Section {rng.choice(['Results', 'Methods', 'Discussion', 'Background'])}\n{body}")
    return "\n\n".join(sections)


def train_pegasus_spm(folder: str | Path, vocab_size: int = 2000, paragraphs: int = 600) -> Path:
    """Train a unigram model with the PEGASUS id layout (pad 0, eos 1, unk 2, no bos); returns spiece.model.

    The corpus writes line breaks as `<n>`, a piece of its own, like the newline-aware PEGASUS vocabulary.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [paragraph.replace(". ", ".<n>", 1) for paragraph in english_paragraphs(paragraphs)]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(folder / "spiece"), model_type="unigram",
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, user_defined_symbols=["<n>"], num_threads=2, minloglevel=2,
    )
    (folder / "spiece.vocab").unlink()
    return folder / "spiece.model"
