"""The synthetic world behind the embedded default: tasks, phrasings, and their held-out splits.

Everything is generated from one seed, so the data set, the pretraining text and the tokenizer trained
on it are identical on every machine. Three kinds of text come from here:

* instruction rows (alpaca: instruction / input / output) for SFT, in several phrasings per task;
* plain prose stating the same kind of facts, for pretraining the base model (what it "knows");
* held-out rows: `test` uses arguments never seen anywhere in training (not in SFT rows, not in the
  pretraining text) with the training phrasings; `test_phrasings` uses phrasings never seen in SFT
  AND unseen arguments — an honestly hard split, reported separately.

The made-up dictionary ("Zorbish") is the one exception to "unseen everywhere": it is world knowledge,
so every entry appears in the pretraining prose, and the held-out entries are those never asked about
in SFT. That mirrors real instruction tuning, which elicits what the base model already knows.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

POSITIVE = ["good", "great", "happy", "lovely", "bright", "kind", "warm", "nice", "glad", "sunny",
            "fresh", "calm", "sweet", "fun", "bold", "fine", "proud", "merry", "tidy", "jolly"]
NEGATIVE = ["bad", "awful", "sad", "ugly", "dull", "cruel", "cold", "nasty", "grim", "gloomy",
            "stale", "angry", "sour", "boring", "weak", "poor", "rude", "dreary", "messy", "bitter"]
NEUTRAL = ["the", "a", "day", "food", "room", "trip", "song", "book", "film", "team", "city",
           "was", "is", "felt", "seems", "very", "quite", "so", "our", "my", "that", "this",
           "show", "game", "park", "meal", "town", "class", "walk", "view"]
MEANINGS = ["river", "stone", "cloud", "bread", "horse", "apple", "chair", "window", "garden", "candle",
            "mountain", "forest", "island", "bridge", "tower", "market", "letter", "mirror", "basket",
            "ladder", "kettle", "pillow", "button", "wagon", "feather", "lantern", "meadow", "harbor",
            "blanket", "cherry", "engine", "violin", "pepper", "rabbit", "salmon", "turtle", "monkey",
            "dragon", "castle", "anchor", "hammer", "needle", "pencil", "rocket", "saddle", "tunnel",
            "valley", "wallet", "yogurt", "zipper", "carpet", "dinner", "finger", "gravel", "helmet",
            "jacket", "kitten", "lemon", "magnet", "napkin", "orange", "parrot", "quilt", "ribbon",
            "sugar", "ticket", "umbrella", "velvet", "walnut", "butter", "cactus", "donkey", "falcon",
            "goblet", "hollow", "insect", "jungle", "kernel", "lizard", "marble"]


@dataclass(frozen=True)
class Task:
    """One instruction task: how to draw arguments, state the answer, phrase the request and the fact."""

    name: str
    train_phrasings: tuple[str, ...]      # "instruction" or "instruction\n\ninput" templates
    heldout_phrasings: tuple[str, ...]
    prose: tuple[str, ...]                # pretraining statements of the same fact
    solve: Callable[[dict], str]


def _fmt_list(xs) -> str:
    return " ".join(str(x) for x in xs)


TASKS: tuple[Task, ...] = (
    Task("add",
         ("Add {a} and {b}.", "What is {a} plus {b}?", "Compute {a} + {b}.", "Sum these two numbers.|{a} and {b}",
          "Calculate the sum of {a} and {b}.", "Give the result of adding {a} to {b}."),
         ("What do you get when {a} and {b} are combined by addition?", "Total up {a} and {b}, please."),
         ("{a} plus {b} is {ans}.", "The sum of {a} and {b} is {ans}.", "If you add {a} and {b} you get {ans}."),
         lambda x: str(x["a"] + x["b"])),
    Task("reverse",
         ("Reverse {w}.", "Reverse the following word.|{w}", "Write {w} backwards.", "Spell {w} in reverse order.",
          "What is {w} reversed?", "Flip the letters of this word.|{w}"),
         ("Turn {w} around so its last letter comes first.", "Give me the mirror spelling of {w}."),
         ("{w} backwards is {ans}.", "Spelled in reverse, {w} becomes {ans}.", "The reverse of {w} is {ans}."),
         lambda x: x["w"][::-1]),
    Task("sort",
         ("Sort these numbers from smallest to largest.|{xs}", "Sort {xs} in ascending order.",
          "Put {xs} in increasing order.", "Arrange the numbers {xs} from low to high.",
          "Order these numbers, smallest first.|{xs}", "List {xs} sorted ascending."),
         ("Rearrange {xs} so that each number is bigger than the one before.", "Rank {xs} beginning with the least."),
         ("Sorted from smallest to largest, {xs} is {ans}.", "In ascending order {xs} reads {ans}.",
          "The numbers {xs} in order are {ans}."),
         lambda x: _fmt_list(sorted(x["xs"]))),
    Task("upper",
         ("Convert {w} to uppercase.", "Write this word in capital letters.|{w}", "Make {w} upper case.",
          "Uppercase the word {w}.", "What is {w} in all caps?", "Change the following word to uppercase.|{w}"),
         ("Shout the word {w} by using only big letters.", "Rewrite {w} with every letter capitalized."),
         ("In capital letters, {w} is {ans}.", "The uppercase form of {w} is {ans}.", "{w} in caps is {ans}."),
         lambda x: x["w"].upper()),
    Task("lower",
         ("Convert {W} to lowercase.", "Write this word in small letters.|{W}", "Make {W} lower case.",
          "Lowercase the word {W}.", "What is {W} without capitals?", "Change the following word to lowercase.|{W}"),
         ("Say {W} quietly, using only little letters.", "Rewrite {W} with no capital letters at all."),
         ("In small letters, {W} is {ans}.", "The lowercase form of {W} is {ans}.", "{W} in lowercase is {ans}."),
         lambda x: x["W"].lower()),
    Task("length",
         ("How many letters are in {w}?", "Count the letters in this word.|{w}", "What is the length of {w}?",
          "How long is the word {w}?", "Count the characters of {w}.", "Give the number of letters in {w}."),
         ("Tell me the letter count for {w}.", "If you spell out {w}, how many letters do you write?"),
         ("The word {w} has {ans} letters.", "{w} is {ans} letters long.", "There are {ans} letters in {w}."),
         lambda x: str(len(x["w"]))),
    Task("sentiment",
         ("Is this positive or negative?|{s}", "Classify the sentiment of: {s}",
          "What is the sentiment of this sentence?|{s}", "Positive or negative: {s}",
          "Tell whether the following is positive or negative.|{s}", "Label the mood of {s} as positive or negative."),
         ("Does the sentence {s} sound upbeat or downbeat? Answer positive or negative.",
          "Judge the tone, positive or negative.|{s}"),
         ("The sentence {s} is {ans}.", "{s} sounds {ans}.", "Someone who says {s} feels {ans}."),
         lambda x: x["label"]),
    Task("translate",
         ("Translate {z} from Zorbish to English.", "What does the Zorbish word {z} mean?",
          "Give the English meaning of this Zorbish word.|{z}", "In English, what is {z}?",
          "Translate the following Zorbish word.|{z}", "What is the English for the Zorbish {z}?"),
         ("A Zorbish speaker says {z}. Which English word is that?", "Render the Zorbish term {z} in English."),
         ("In Zorbish, {z} means {ans}.", "The Zorbish word {z} is {ans} in English.", "{z} is Zorbish for {ans}."),
         lambda x: x["meaning"]),
    Task("max",
         ("What is the largest of {xs}?", "Find the biggest number.|{xs}", "Which number is largest: {xs}?",
          "Give the maximum of {xs}.", "Pick the highest number in {xs}.", "Return the largest value.|{xs}"),
         ("Among {xs}, which one tops the rest?", "Name the greatest number you see in {xs}."),
         ("The largest of {xs} is {ans}.", "Of {xs}, the biggest is {ans}.", "The maximum of {xs} is {ans}."),
         lambda x: str(max(x["xs"]))),
)
TASK_NAMES = tuple(t.name for t in TASKS)


class World:
    """Argument pools of the world, split once into train-only and held-out parts."""

    def __init__(self, seed: int = 0):
        rng = random.Random(seed)
        words = set()
        while len(words) < 3000:
            words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 7))))
        words = sorted(words)
        rng.shuffle(words)
        self.heldout_words, self.train_words = words[:300], words[300:]

        pairs = [(a, b) for a in range(100) for b in range(100)]
        rng.shuffle(pairs)
        self.heldout_pairs, self.train_pairs = set(pairs[:500]), pairs[500:]

        zorb = set()
        while len(zorb) < len(MEANINGS):
            zorb.add("".join(rng.choice("zbkqvxgrl") + rng.choice("aeiou") for _ in range(rng.randint(2, 3))))
        self.dictionary = dict(zip(sorted(zorb), MEANINGS))
        entries = sorted(self.dictionary)
        rng.shuffle(entries)
        self.heldout_entries, self.train_entries = entries[:16], entries[16:]
        self._sentences_seen: set[str] = set()
        self._lists_seen: set[tuple] = set()

    # -- argument draws ------------------------------------------------------------------------------
    def args(self, task: str, rng: random.Random, heldout: bool) -> dict:
        """Arguments for one item; held-out draws never overlap anything a training draw can produce."""
        words = self.heldout_words if heldout else self.train_words
        if task == "add":
            a, b = rng.choice(sorted(self.heldout_pairs)) if heldout else rng.choice(self.train_pairs)
            return {"a": a, "b": b}
        if task in ("reverse", "upper", "length"):
            return {"w": rng.choice(words)}
        if task == "lower":
            return {"W": rng.choice(words).upper()}
        if task in ("sort", "max"):
            while True:
                xs = tuple(rng.randint(0, 99) for _ in range(rng.randint(3, 5)))
                # held-out lists are drawn with an odd sum, training lists with an even one: never equal
                if (sum(xs) % 2 == 1) == heldout and (task != "max" or xs.count(max(xs)) == 1):
                    return {"xs": _fmt_list(xs), "_xs": xs}
        if task == "sentiment":
            while True:
                label = rng.choice(["positive", "negative"])
                pool = POSITIVE if label == "positive" else NEGATIVE
                n = rng.randint(3, 6)
                toks = [rng.choice(NEUTRAL) for _ in range(n)]
                for _ in range(rng.randint(1, 2)):
                    toks.insert(rng.randint(0, len(toks)), rng.choice(pool))
                s = " ".join(toks)
                # held-out sentences have an odd number of words, training ones an even number
                if (len(toks) % 2 == 1) == heldout:
                    return {"s": s, "label": label}
        if task == "translate":
            z = rng.choice(self.heldout_entries if heldout else self.train_entries)
            return {"z": z, "meaning": self.dictionary[z]}
        raise KeyError(task)


def _render(template: str, x: dict) -> tuple[str, str]:
    values = {k: v for k, v in x.items() if not k.startswith("_")}
    instruction, _, inp = template.partition("|")
    return instruction.format(**values), inp.format(**values)


def _solve(task: Task, x: dict) -> str:
    if "_xs" in x:
        return task.solve({**x, "xs": x["_xs"]})
    return task.solve(x)


def instruction_rows(world: World, n: int, seed: int, split: str) -> list[dict]:
    """Alpaca rows. split: 'train' | 'test' (unseen args) | 'test_phrasings' (unseen phrasings + args)."""
    rng = random.Random(f"{seed}-{split}")
    heldout_args = split != "train"
    rows = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        phrasings = task.heldout_phrasings if split == "test_phrasings" else task.train_phrasings
        x = world.args(task.name, rng, heldout=heldout_args)
        instruction, inp = _render(rng.choice(phrasings), x)
        rows.append({"instruction": instruction, "input": inp, "output": _solve(task, x), "task": task.name})
    rng.shuffle(rows)
    return rows


def pretraining_documents(world: World, n_docs: int, seed: int, facts_per_doc: int = 6) -> list[str]:
    """Plain prose of training-side facts (never a held-out argument, except dictionary entries)."""
    rng = random.Random(f"{seed}-pretrain")
    docs = []
    entries = sorted(world.dictionary)
    for d in range(n_docs):
        facts = []
        for _ in range(facts_per_doc):
            task = rng.choice(TASKS)
            if task.name == "translate":       # world knowledge: every entry, held-out ones included
                z = rng.choice(entries)
                x = {"z": z, "meaning": world.dictionary[z]}
            else:
                x = world.args(task.name, rng, heldout=False)
            values = {k: v for k, v in x.items() if not k.startswith("_")}
            facts.append(rng.choice(task.prose).format(ans=_solve(task, x), **values))
        docs.append(" ".join(facts))
    return docs
