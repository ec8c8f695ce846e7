"""The synthetic world behind the embedded default: tasks, phrasings, and their held-out splits.

Everything is generated from one seed, so the data set, the pretraining text and the tokenizer trained
on it are identical on every machine. Three kinds of text come from here:

* instruction rows (alpaca: instruction / input / output) for SFT, in several phrasings per task;
* plain prose stating the same kind of facts, for pretraining the base model (what it "knows");
* held-out rows: `test` uses arguments never seen anywhere in training (not in SFT rows, not in the
  pretraining text) with the training phrasings; `test_phrasings` uses phrasings never seen in SFT
  AND unseen arguments — an honestly hard split, reported separately.

The made-up dictionary ("Zorbish") is world knowledge: one fixed Zorbish -> English dictionary (80 words, 60
meanings), every entry of which the pretraining prose states in several phrasings ("zeka means market."), as a base
model learns facts from its corpus. Instructions ask about a fixed three quarters of its words; `test` /
`test_phrasings` ask only about the other quarter, words no instruction or preference pair ever names (each has a
synonym among the asked words, so no answer word is new to SFT): to answer, the model has to recall what
pretraining taught it through a request form it only learned for other words (knowledge extraction, not copying).
The one exception to "held-out arguments appear nowhere in training": a dictionary entry is in the pretraining text.

(An in-context variant -- a random 3-entry glossary in each prompt -- stayed at chance, 28-34 %, for this 1.9M-
parameter model: after SFT on 2,214 rows, after 1,946 steps on them alone (train loss 0.003: memorised), and after
600 further pretraining steps on 19,200 fresh glossaries. Reading a glossary is an induction circuit the model
does not form at this size and budget; recalling a dictionary it has read is what such a base can do.)
"""

from __future__ import annotations

import random
import re
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
          "Calculate the sum of {a} and {b}.", "Add these numbers: {a} and {b}"),
         ("What do you get when {a} and {b} are combined by addition?", "Total up {a} and {b}, please."),
         ("{a} plus {b} is {ans}.", "{a} and {b} make {ans}.", "{a} + {b} = {ans}."),
         lambda x: str(x["a"] + x["b"])),
    Task("reverse",
         ("Reverse {w}.", "Reverse the following word.|{w}", "Write backwards: {w}", "Spell in reverse order: {w}",
          "What is the reverse of {w}?", "Flip the letters of this word.|{w}"),
         ("Turn {w} around so its last letter comes first.", "Give me the mirror spelling of {w}."),
         ("{w} backwards is {ans}.", "{w} reversed is {ans}.", "the reverse of {w} is {ans}."),
         lambda x: x["w"][::-1]),
    Task("sort",
         ("Sort these numbers from smallest to largest.|{xs}", "Sort in ascending order: {xs}",
          "Put in increasing order: {xs}", "Arrange these numbers from low to high: {xs}",
          "Order these numbers, smallest first.|{xs}", "List sorted ascending: {xs}"),
         ("Rearrange {xs} so that each number is bigger than the one before.", "Rank {xs} beginning with the least."),
         ("{xs} sorted is {ans}.", "in order, {xs} is {ans}.", "{xs} ascending is {ans}."),
         lambda x: _fmt_list(sorted(x["xs"]))),
    Task("repeat",
         ("Repeat {w}.", "Copy this word exactly.|{w}", "Say {w} again.", "Write the word {w} once more.",
          "Echo back: {w}", "Repeat the following word.|{w}"),
         ("Parrot the word {w} without changing it.", "Give {w} back to me unchanged."),
         ("{w} repeated is {ans}.", "{w} again is {ans}.", "{w} copied is {ans}."),
         lambda x: x["w"]),
    Task("upper",
         ("Convert to uppercase: {w}", "Write this word in capital letters.|{w}", "Make upper case: {w}",
          "Uppercase the word {w}.", "Write in all caps: {w}", "Change the following word to uppercase.|{w}"),
         ("Shout the word {w} by using only big letters.", "Rewrite {w} with every letter capitalized."),
         ("{w} in capitals is {ans}.", "{w} uppercase is {ans}.", "{w} in caps is {ans}."),
         lambda x: x["w"].upper()),
    Task("lower",
         ("Convert to lowercase: {W}", "Write this word in small letters.|{W}", "Make lower case: {W}",
          "Lowercase the word {W}.", "Write without capitals: {W}", "Change the following word to lowercase.|{W}"),
         ("Say {W} quietly, using only little letters.", "Rewrite {W} with no capital letters at all."),
         ("{W} in small letters is {ans}.", "{W} lowercase is {ans}.", "{W} in lowercase is {ans}."),
         lambda x: x["W"].lower()),
    Task("length",
         ("How many letters are in {w}?", "Count the letters in this word.|{w}", "What is the length of {w}?",
          "How long is the word {w}?", "Count the characters of {w}.", "Give the number of letters in {w}."),
         ("Tell me the letter count for {w}.", "If you spell out {w}, how many letters do you write?"),
         ("the length of {w} is {ans}.", "the letter count of {w} is {ans}.", "{w} has a length of {ans}."),
         lambda x: str(len(x["w"]))),
    Task("sentiment",
         ("Is this positive or negative?|{s}", "Classify the sentiment of: {s}",
          "What is the sentiment of this sentence?|{s}", "Positive or negative: {s}",
          "Tell whether the following is positive or negative.|{s}", "Label the mood as positive or negative: {s}"),
         ("Does the sentence {s} sound upbeat or downbeat? Answer positive or negative.",
          "Judge the tone, positive or negative.|{s}"),
         ("{s} is {ans}.", "{s} sounds {ans}.", "the mood of {s} is {ans}."),
         lambda x: x["label"]),
    Task("translate",
         ("Translate {z} from Zorbish to English.", "What does {z} mean?", "Give the English meaning of {z}.",
          "Look up this Zorbish word.|{z}", "Translate the following word into English.|{z}",
          "What is {z} in English?"),
         ("A Zorbish speaker says {z}. Which English word is that?", "Render the Zorbish term {z} in English."),
         # several statements of each entry: facts read in varied forms are the ones a model can later be asked about
         ("{z} means {ans}.", "the Zorbish word {z} means {ans}.", "in Zorbish, {z} is {ans}.",
          "{z} is Zorbish for {ans}.", "{z} in English is {ans}."),
         lambda x: x["meaning"]),
    Task("max",
         ("What is the largest of {xs}?", "Find the biggest number.|{xs}", "Which number is largest: {xs}",
          "Give the maximum of {xs}.", "Pick the highest number in {xs}.", "Return the largest value.|{xs}"),
         ("Among {xs}, which one tops the rest?", "Name the greatest number you see in {xs}."),
         ("the largest of {xs} is {ans}.", "the max of {xs} is {ans}.", "of {xs}, the biggest is {ans}."),
         lambda x: str(max(x["xs"]))),
)
TASK_NAMES = tuple(t.name for t in TASKS)
# Share of the training text per task (held-out splits stay balanced): the skills a small model learns slowest
# (carrying in addition, reversing, sorting, the maximum) get more examples, and the dictionary more pretraining
# statements (each of its 80 entries is read ~75 times); copying and classifying need few.
TRAIN_WEIGHTS = {"add": 3, "reverse": 2, "sort": 2, "max": 2, "translate": 2}


def _task_cycle(split: str) -> list[Task]:
    """Tasks in the order rows are drawn: balanced for held-out splits, TRAIN_WEIGHTS for training text."""
    return [t for t in TASKS for _ in range(TRAIN_WEIGHTS.get(t.name, 1) if split == "train" else 1)]


def _frame_words() -> set[str]:
    text = " ".join(p for t in TASKS for p in t.train_phrasings + t.heldout_phrasings + t.prose)
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)} | set(POSITIVE + NEGATIVE + NEUTRAL + MEANINGS)


class World:
    """Argument pools of the world, split once into train-only and held-out parts."""

    def __init__(self, seed: int = 0):
        rng = random.Random(seed)
        reserved = _frame_words()  # an argument word never doubles as a word of the phrasings or lexicons
        zorb = set()
        while len(zorb) < len(MEANINGS):
            z = "".join(rng.choice("zbkqvxgrl") + rng.choice("aeiou") for _ in range(rng.randint(2, 3)))
            if z not in reserved:
                zorb.add(z)
        self.zorbish = sorted(zorb)  # whole words to the tokenizer, like the English lexicon
        reserved |= zorb
        # the dictionary: 60 meanings, 20 of them with two Zorbish words (synonyms). The held-out words are one of
        # each synonym pair, so every meaning is an answer in training too: SFT that never produced a word would
        # learn to suppress it (measured: held-out recall 0 % after SFT when the held-out meanings had no synonym,
        # while the base recalls all 80 entries), and the held-out test would measure that, not recall.
        meanings = list(MEANINGS)
        rng.shuffle(meanings)
        asked = list(self.zorbish)
        rng.shuffle(asked)
        n_held = len(asked) // 4
        held, train = asked[:n_held], asked[n_held:]
        self.dictionary = {**{z: meanings[i] for i, z in enumerate(train)}, **{z: meanings[i] for i, z in enumerate(held)}}
        self.heldout_zorbish = sorted(held)  # never in an instruction; stated in pretraining
        self.train_zorbish = sorted(train)
        words = set()
        while len(words) < 3000:
            words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6))))
        words = sorted(words - reserved)
        rng.shuffle(words)
        self.heldout_words = words[:300]
        # a training word whose reversal is a held-out word would show that word as an answer: leave it out
        unseen = set(self.heldout_words)
        self.train_words = [w for w in words[300:] if w[::-1] not in unseen]

        # addition over 0..24; a held-out pair is held out in both orders, so its sum is never seen at all
        unordered = [(a, b) for a in range(25) for b in range(a, 25)]
        rng.shuffle(unordered)
        held = {p for a, b in unordered[:40] for p in ((a, b), (b, a))}
        self.heldout_pairs = held
        self.train_pairs = [(a, b) for a in range(25) for b in range(25) if (a, b) not in held]

    # -- argument draws ------------------------------------------------------------------------------
    def args(self, task: str, rng: random.Random, heldout: bool, statement: bool = False) -> dict:
        """Arguments for one item; held-out draws never overlap anything a training draw can produce.

        `statement`: for pretraining prose, where the dictionary's every entry is stated (world knowledge).
        """
        words = self.heldout_words if heldout else self.train_words
        if task == "add":
            a, b = rng.choice(sorted(self.heldout_pairs)) if heldout else rng.choice(self.train_pairs)
            return {"a": a, "b": b}
        if task in ("repeat", "reverse", "upper", "length"):
            return {"w": rng.choice(words)}
        if task == "lower":
            return {"W": rng.choice(words).upper()}
        if task in ("sort", "max"):
            top = 9 if task == "sort" else 49  # sort single digits; max over numbers up to 49
            while True:
                xs = tuple(rng.randint(0, top) for _ in range(rng.randint(3, 5)))
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
            pool = self.zorbish if statement else self.heldout_zorbish if heldout else self.train_zorbish
            z = rng.choice(pool)
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
    cycle = _task_cycle(split)
    rows = []
    for i in range(n):
        task = cycle[i % len(cycle)]
        phrasings = task.heldout_phrasings if split == "test_phrasings" else task.train_phrasings
        x = world.args(task.name, rng, heldout=heldout_args)
        instruction, inp = _render(rng.choice(phrasings), x)
        rows.append({"instruction": instruction, "input": inp, "output": _solve(task, x), "task": task.name})
    rng.shuffle(rows)
    return rows


def pretraining_facts(world: World, n: int, seed: int) -> list[dict]:
    """Plain-text statements split before the answer: {"prompt": "cat backwards is", "completion": " tac."}.

    The base model is trained to continue such statements (loss on the continuation only): it learns what
    is true in the world without ever seeing an instruction or the chat format. Never a held-out argument, except
    the dictionary: every entry is stated (world knowledge that held-out requests ask about).
    """
    rng = random.Random(f"{seed}-facts")
    cycle = _task_cycle("train")
    facts = []
    for i in range(n):
        task = cycle[i % len(cycle)]
        x = world.args(task.name, rng, heldout=False, statement=True)
        values = {k: v for k, v in x.items() if not k.startswith("_")}
        head = rng.choice(task.prose).split("{ans}")[0].rstrip()
        facts.append({"prompt": head.format(**values), "completion": f" {_solve(task, x)}."})
    rng.shuffle(facts)
    return facts


def _plausible_wrong(task: str, x: dict, answer: str, rng: random.Random) -> str:
    """A near miss of the kind a half-trained model makes: off by one, not reversed, wrong order, wrong case..."""
    def changed_letter(w: str) -> str:
        i = rng.randrange(len(w))
        return w[:i] + rng.choice([c for c in string.ascii_lowercase if c != w[i].lower()]) + w[i + 1:]

    if task in ("add", "length"):
        return str(int(answer) + 1 if answer == "0" or rng.random() < 0.5 else int(answer) - 1)
    if task == "reverse":
        return x["w"] if x["w"] != answer else changed_letter(answer)
    if task == "repeat":
        return answer[::-1] if answer[::-1] != answer else changed_letter(answer)
    if task in ("upper", "lower"):
        return answer.capitalize() if rng.random() < 0.5 or answer.capitalize() == answer else (
            answer.lower() if task == "upper" else answer.upper())
    if task == "sort":
        xs = sorted(x["_xs"])
        wrong = list(x["_xs"]) if list(x["_xs"]) != xs else xs[::-1]
        return _fmt_list(wrong) if wrong != xs else _fmt_list(xs[:-1])  # all equal: one dropped
    if task == "max":
        xs = sorted(x["_xs"])
        return str(xs[-2] if rng.random() < 0.5 else xs[0])
    if task == "sentiment":
        return "negative" if answer == "positive" else "positive"
    if task == "translate":  # the meaning of another word of the dictionary
        return rng.choice([m for m in MEANINGS if m != answer])
    raise KeyError(task)


def preference_rows(world: World, n: int, seed: int, split: str) -> list[dict]:
    """Conversational preference rows: chosen = the right answer, rejected = a plausible wrong one.

    One rejected answer in eight is the right answer that does not stop (it runs on), so the preference also
    rewards ending the turn. split: 'train' | 'test' (unseen arguments, training phrasings).
    """
    rng = random.Random(f"{seed}-preference-{split}")
    rows = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        x = world.args(task.name, rng, heldout=split != "train")
        instruction, inp = _render(rng.choice(task.train_phrasings), x)
        answer = _solve(task, x)
        rejected = f"{answer} {answer}" if rng.random() < 0.125 else _plausible_wrong(task.name, x, answer, rng)
        rows.append({"prompt": [{"role": "user", "content": instruction + (f"\n\n{inp}" if inp else "")}],
                     "chosen": [{"role": "assistant", "content": answer}],
                     "rejected": [{"role": "assistant", "content": rejected}], "task": task.name})
    rng.shuffle(rows)
    return rows
