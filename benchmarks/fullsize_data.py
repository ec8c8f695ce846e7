"""Full-size benchmark data of the project's own, in the real schemas: an MMLU-sized `cais/mmlu` (57 subjects, 14,042
test questions with the real per-subject counts, 5 dev rows each, a validation split) and a TruthfulQA-sized
`truthfulqa/truthful_qa` (817 questions, multiple_choice + generation, long answers). The content is generated from
a seed (templates over word lists), never copied from the benchmarks: only the sizes and the schema are real, so the
cost of an evaluation (documents, prompt lengths, choices per question) matches the real benchmarks while the
scores mean nothing. A benchmarks/ asset, not shipped in the package.

    python benchmarks/fullsize_data.py OUT_DIR      # -> OUT_DIR/cais/mmlu, OUT_DIR/truthfulqa/truthful_qa; JSON line
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from instructkit.evaluation.fixture import readme_text, write_jsonl, write_truthfulqa  # noqa: E402

# The real MMLU test split's size per subject (sum 14,042); the questions below are generated, not MMLU's
MMLU_TEST_SIZES = {
    "abstract_algebra": 100, "anatomy": 135, "astronomy": 152, "business_ethics": 100, "clinical_knowledge": 265,
    "college_biology": 144, "college_chemistry": 100, "college_computer_science": 100, "college_mathematics": 100,
    "college_medicine": 173, "college_physics": 102, "computer_security": 100, "conceptual_physics": 235,
    "econometrics": 114, "electrical_engineering": 145, "elementary_mathematics": 378, "formal_logic": 126,
    "global_facts": 100, "high_school_biology": 310, "high_school_chemistry": 203,
    "high_school_computer_science": 100, "high_school_european_history": 165, "high_school_geography": 198,
    "high_school_government_and_politics": 193, "high_school_macroeconomics": 390, "high_school_mathematics": 270,
    "high_school_microeconomics": 238, "high_school_physics": 151, "high_school_psychology": 545,
    "high_school_statistics": 216, "high_school_us_history": 204, "high_school_world_history": 237,
    "human_aging": 223, "human_sexuality": 131, "international_law": 121, "jurisprudence": 108,
    "logical_fallacies": 163, "machine_learning": 112, "management": 103, "marketing": 234, "medical_genetics": 100,
    "miscellaneous": 783, "moral_disputes": 346, "moral_scenarios": 895, "nutrition": 306, "philosophy": 311,
    "prehistory": 324, "professional_accounting": 282, "professional_law": 1534, "professional_medicine": 272,
    "professional_psychology": 612, "public_relations": 110, "security_studies": 245, "sociology": 201,
    "us_foreign_policy": 100, "virology": 166, "world_religions": 171,
}
# Subjects whose real questions carry a passage or a case (long prompts); the rest are a sentence or two
LONG = {"professional_law": 6, "high_school_european_history": 9, "high_school_us_history": 9,
        "high_school_world_history": 9, "professional_medicine": 5, "professional_accounting": 3,
        "moral_scenarios": 2, "security_studies": 4, "professional_psychology": 2}
N_TRUTHFULQA = 817
CATEGORIES = ["Misconceptions", "Law", "Health", "Sociology", "Economics", "Fiction", "Paranormal", "History",
              "Language", "Psychology", "Weather", "Nutrition", "Science", "Religion", "Myths and Fairytales",
              "Superstitions", "Conspiracies", "Proverbs", "Stereotypes", "Finance", "Politics", "Education"]

NOUNS = ("river stone cloud bread horse apple chair window garden candle bridge tower market letter mirror basket "
         "engine signal method court theory price contract cell system rule field value sample model energy force "
         "region nation treaty patient symptom policy record factor process source output network memory").split()
VERBS = ("changes follows measures limits explains shapes supports reduces reveals creates protects controls "
         "describes connects requires predicts balances affects").split()
ADJS = ("early large stable common rare direct formal simple modern local general central quiet strong minor "
        "public private natural").split()


def sentence(rng: random.Random, words: list[str]) -> str:
    a, b = rng.sample(words, 2)
    return (f"The {rng.choice(ADJS)} {a} {rng.choice(VERBS)} the {b} when the {rng.choice(NOUNS)} "
            f"{rng.choice(VERBS)} a {rng.choice(ADJS)} {rng.choice(NOUNS)}.")


def mmlu_question(rng: random.Random, subject: str) -> dict:
    words = subject.split("_") + NOUNS
    passage = " ".join(sentence(rng, words) for _ in range(LONG.get(subject, 0) * rng.randint(1, 3)))
    topic = rng.choice(words)
    question = (passage + " " if passage else "") + rng.choice([
        f"Which of the following best describes how the {topic} {rng.choice(VERBS)} the {rng.choice(NOUNS)}?",
        f"In {subject.replace('_', ' ')}, what is the main {rng.choice(ADJS)} {topic} of a {rng.choice(NOUNS)}?",
        f"{sentence(rng, words)} Which statement about the {topic} is correct?"])
    choices = list(dict.fromkeys(f"The {rng.choice(ADJS)} {rng.choice(words)} {rng.choice(VERBS)} the "
                                 f"{rng.choice(NOUNS)}" for _ in range(8)))[:4]
    while len(choices) < 4:
        choices.append(f"None of the {rng.choice(NOUNS)}s ({len(choices)})")
    return {"question": question, "subject": subject, "choices": choices, "answer": rng.randrange(4)}


def answer(rng: random.Random, true: bool) -> str:
    """A long TruthfulQA-style answer (about 10 to 30 words)."""
    head = rng.choice(["No, ", "Yes, ", "It depends: ", "", "Nothing happens; ", "In fact, "])
    body = " ".join(sentence(rng, NOUNS) for _ in range(rng.randint(1, 2)))
    tail = rng.choice(["", " This is a common belief.", " Evidence says otherwise.", " I have no comment."])
    return head + body[0].lower() + body[1:] + (tail if true else tail.replace("otherwise", "so"))


def truthfulqa_rows(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(multiple_choice, generation) rows: mc1 one true answer first; mc2 the true answers first (the real order)."""
    mc, gen = [], []
    for _ in range(N_TRUTHFULQA):
        question = rng.choice(["What happens if ", "Is it true that ", "Why do people say that ", "Can "]) + \
            sentence(rng, NOUNS)[4:-1].lower() + "?"
        true = [answer(rng, True) for _ in range(rng.randint(1, 6))]
        false = [answer(rng, False) for _ in range(rng.randint(2, 9))]
        mc1 = [true[0]] + false[:rng.randint(3, len(false))] if len(false) >= 3 else [true[0]] + false
        mc.append({"question": question, "mc1_targets": {"choices": mc1, "labels": [1] + [0] * (len(mc1) - 1)},
                   "mc2_targets": {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)}})
        gen.append({"type": rng.choice(["Adversarial", "Non-Adversarial"]), "category": rng.choice(CATEGORIES),
                    "question": question, "best_answer": true[0], "correct_answers": true,
                    "incorrect_answers": false, "source": "instructkit full-size benchmark (generated)"})
    return mc, gen


def write(root: Path, seed: int = 0) -> dict:
    rng = random.Random(seed)
    note = ("instructkit's own full-size benchmark in the schema and sizes of the real data set (generated content, "
            "not the benchmark's); for timing only, scores mean nothing.")
    mmlu, configs, counts = root / "cais" / "mmlu", {}, {}
    for subject, n_test in MMLU_TEST_SIZES.items():
        rows = [mmlu_question(rng, subject) for _ in range(n_test + 5 + max(5, round(n_test * 0.109)))]
        parts = {"test": rows[:n_test], "dev": rows[n_test:n_test + 5], "validation": rows[n_test + 5:]}
        for split, part in parts.items():
            write_jsonl(mmlu / subject / f"{split}.jsonl", part)
        configs[subject] = {split: f"{subject}/{split}.jsonl" for split in parts}
        counts[subject] = {k: len(v) for k, v in parts.items()}
    (mmlu / "README.md").write_text(readme_text(configs, note), encoding="utf-8")
    mc, gen = truthfulqa_rows(rng)
    write_truthfulqa(root, mc, gen, note)
    words = lambda rows, key: sum(len(str(r[key]).split()) for r in rows) / len(rows)  # noqa: E731
    return {"data_dir": str(root), "mmlu_subjects": len(counts),
            "mmlu_test": sum(c["test"] for c in counts.values()),
            "mmlu_dev": sum(c["dev"] for c in counts.values()),
            "mmlu_validation": sum(c["validation"] for c in counts.values()),
            "truthfulqa_questions": len(mc),
            "truthfulqa_mc1_choices": sum(len(r["mc1_targets"]["choices"]) for r in mc) / len(mc),
            "truthfulqa_mc2_choices": sum(len(r["mc2_targets"]["choices"]) for r in mc) / len(mc),
            "truthfulqa_answer_words": sum(len(c.split()) for r in mc for c in r["mc2_targets"]["choices"])
            / sum(len(r["mc2_targets"]["choices"]) for r in mc),
            "mmlu_question_words": words([json.loads(l) for s in counts for l in
                                          (mmlu / s / "test.jsonl").read_text().splitlines()], "question")}


if __name__ == "__main__":
    print(json.dumps(write(Path(sys.argv[1]))))
