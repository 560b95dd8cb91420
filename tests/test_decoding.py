"""How the engine chooses each token besides greedy: the DRY repetition control (penalise the token that
would extend a repeat of the row's own output) and seeded sampling. Handcrafted logits for the rules,
the tiny model for the engine: greedy where nothing repeats, a loop steered away, the same samples in
any batch."""

import json

import pytest
from test_evaluate import checkpoint, dataset  # noqa: F401
from test_generate import PARROT_ANSWER, PARROT_MESSAGE, PROMPTS, parrot  # noqa: F401

from core import cli, store
from core.inference import generate
from core.inference.generate import Decoding, choose, repeats

pytestmark = pytest.mark.usefixtures("one_thread")

DRY = Decoding(repetition="dry")


def test_repeats_names_the_token_that_followed_the_repeated_end():
    # ... 5 6 7 ... 5 6: the end "5 6" was written before, followed by 7
    assert repeats([5, 6, 7, 9, 5, 6], allowed=2) == {7: 2}
    assert repeats([5, 6, 7, 9, 5, 6], allowed=3) == {}
    # the longest repeat wins for a token; each token that followed a repeat is named
    assert repeats([1, 2, 3, 8, 2, 3, 9, 1, 2, 3], allowed=2) == {8: 3, 9: 2}
    assert repeats([4], allowed=1) == {} and repeats([], allowed=1) == {}
    # a loop of one token: the repeat is capped at MAX_REPEAT
    assert repeats([7] * 100, allowed=2) == {7: generate.MAX_REPEAT}


# a handcrafted "model": a vocabulary of 5 pieces; at every step it prefers the token that continues
# the line it was trained on, by GAP logits over the second choice
VOCAB = ["\n", "class", " A", " B", "end"]
GAP = 2.0


def scripted(first: int, following: dict[int, int], second: dict[int, int], steps: int, decoding: Decoding):
    """Decode `steps` tokens from a model that starts with `first`, then ranks `following[last token]`
    first and `second[that token]` GAP lower (every other token far below)."""
    import torch

    tokens: list[int] = []
    for _ in range(steps):
        wanted = following[tokens[-1]] if tokens else first
        logits = torch.full((len(VOCAB),), -10.0)
        logits[wanted] = 0.0
        if wanted in second:
            logits[second[wanted]] = -GAP
        text = "".join(VOCAB[t] for t in tokens)
        tokens.append(choose(logits, tokens, text[text.rfind("\n") + 1 :], decoding, VOCAB.__getitem__))
    return tokens


def lines(tokens: list[int]) -> list[str]:
    return "".join(VOCAB[t] for t in tokens).split("\n")


def test_dry_steers_a_line_loop_away_where_greedy_repeats_it():
    class_a = {1: 2, 2: 0, 3: 0, 0: 1}  # "class A\n" over and over; " B" is the runner-up of " A"
    greedy = scripted(1, class_a, {2: 3}, 12, generate.GREEDY)
    assert lines(greedy) == ["class A"] * 4 + [""]
    dry = scripted(1, class_a, {2: 3}, 12, DRY)
    # line 2 repeats "class A" (penalties 0.8 and 1.4 stay under the gap of 2); on line 3 the repeat
    # "class A\nclass" is 4 tokens long: " A" loses 0.8 * 1.75^2 = 2.45 and " B" is written instead
    assert lines(dry)[:3] == ["class A", "class A", "class B"]
    assert dry[:7] == greedy[:7]  # the same tokens until the penalty outweighs the gap


def test_structure_lines_are_never_penalised():
    end = {4: 0, 0: 4}  # "end\n" over and over: PlantUML closes blocks like that
    assert scripted(4, end, {4: 1, 0: 2}, 10, DRY) == scripted(4, end, {4: 1, 0: 2}, 10, generate.GREEDY)
    assert lines(scripted(4, end, {4: 1, 0: 2}, 10, DRY)) == ["end"] * 5 + [""]
    assert generate._structure("else (no)") and generate._structure("  activate DB") and generate._structure("en")
    assert not generate._structure("endpoint --> Server") and not generate._structure("class A")


def test_top_k_1_and_a_tiny_top_p_sample_the_most_likely_token():
    import torch

    logits = torch.tensor([0.0, 3.0, 2.9, -1.0])
    for decoding in (Decoding(temperature=1.5, top_k=1), Decoding(temperature=1.5, top_p=1e-6)):
        picks = {choose(logits, [], "", decoding, str, torch.Generator().manual_seed(s)) for s in range(20)}
        assert picks == {1}
    spread = {
        choose(logits, [], "", Decoding(temperature=1.5), str, torch.Generator().manual_seed(s)) for s in range(20)
    }
    assert spread >= {1, 2}  # without the filters both likely tokens are drawn


def test_dry_is_token_identical_to_greedy_where_nothing_repeats(parrot):
    """Rows whose greedy tokens never extend a repeat of 2 tokens get exactly greedy's tokens from the
    DRY path (which picks one row at a time from float32 logits instead of the batched argmax)."""
    engine = generate.Engine(str(parrot), dtype="float32")
    messages = [PARROT_MESSAGE, *PROMPTS, PARROT_MESSAGE]
    ids = engine.encode(messages, 24)

    def run(decoding):
        rows = [generate._Row(i, row_ids, 24) for i, row_ids in enumerate(ids)]
        with engine.selected("base") as model:
            for _ in engine.decode(model, rows, 3, guard=False, decoding=decoding):
                pass
        return [row.tokens for row in rows]

    greedy, dry = run(generate.GREEDY), run(DRY)
    unrepeated = [i for i, tokens in enumerate(greedy) if not any(repeats(tokens[:n], 2) for n in range(len(tokens)))]
    assert 0 in unrepeated and len(unrepeated) >= 2  # the parrot's answer, and at least one more
    for i in unrepeated:
        assert dry[i] == greedy[i]
    assert engine.generate([PARROT_MESSAGE], decoding=DRY)[0].output == PARROT_ANSWER


def test_sampling_is_reproducible_per_seed_and_row_in_any_batch(tiny_model):
    engine = generate.Engine(str(tiny_model), dtype="float32")
    messages = PROMPTS * 2
    hot = Decoding(temperature=1.0, seed=7)

    def run(decoding, batch_size=4, sample=0):
        rows = engine.generate(messages, max_new_tokens=12, batch_size=batch_size, decoding=decoding, sample=sample)
        return [row.output for row in rows]

    first = run(hot)
    assert run(hot, batch_size=1) == first  # each row draws from its own generator
    assert first[:3] == first[3:]  # the same prompt, seed and sample number: the same output
    assert run(Decoding(temperature=1.0, seed=8)) != first
    assert run(hot, sample=1) != first
    assert first != run(generate.GREEDY)


def test_greedy_settings_are_what_they_were_and_each_other_setting_is_named():
    assert generate.GREEDY.settings() == {"decoding": "greedy", "seed": generate.SEED}
    assert DRY.settings() == {"decoding": "greedy", "seed": 0, "repetition": "dry", "dry": [0.8, 1.75, 2]}
    hot = Decoding(temperature=0.7, top_p=0.9, seed=3).settings()
    assert hot == {"decoding": "sample", "seed": 3, "temperature": 0.7, "top_k": 0, "top_p": 0.9}


# ---- the decoding settings in evaluate: stored per setting, pass@k -------------------------------


def evaluate_json(capsys, checkpoint, dataset, *extra) -> dict:
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(dataset), "--limit", "3"]
    assert cli.main([*argv, "--max-new-tokens", "12", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_outputs_are_stored_per_decoding_setting(checkpoint, dataset, capsys):
    greedy = evaluate_json(capsys, checkpoint, dataset)
    dry = evaluate_json(capsys, checkpoint, dataset, "--repetition", "dry")
    assert greedy["generated"] == dry["generated"] == 3  # another setting: generated, not served
    assert greedy["settings"]["decoding"] == "greedy" and "repetition" not in greedy["settings"]
    assert dry["settings"]["repetition"] == "dry" and dry["settings"]["dry"] == [0.8, 1.75, 2]
    assert evaluate_json(capsys, checkpoint, dataset, "--repetition", "dry")["reused"] == 3
    assert evaluate_json(capsys, checkpoint, dataset)["reused"] == 3


def test_samples_report_pass_at_k_with_its_interval(checkpoint, dataset, capsys):
    summary = evaluate_json(capsys, checkpoint, dataset, "--temperature", "1", "--samples", "3")
    found = summary["pass_at_k"]
    assert found["k"] == 3 and found["n"] == 3 and set(found["per_type"]) == {"class", "sequence"}
    assert found["low"] <= found["value"] <= found["high"]
    generations = store.query_for_tests("SELECT count(*) AS n FROM generations")[0]["n"]
    assert generations == 9  # 3 prompts x 3 samples, each stored under its own key
    again = evaluate_json(capsys, checkpoint, dataset, "--temperature", "1", "--samples", "3")
    assert again["pass_at_k"] == found and again["generated"] == 0
    assert store.query_for_tests("SELECT count(*) AS n FROM generations")[0]["n"] == generations + 3  # relinked
    assert "pass_at_k" not in evaluate_json(capsys, checkpoint, dataset)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "2"], "--samples 2: samples above 1 need a temperature above 0"),
        (["--samples", "2", "--temperature", "1", "--repair"], "pass@k counts the model's own outputs"),
        (["--repetition", "loops"], "--repetition loops: input should be 'none' or 'dry'"),
        (["--top-p", "0"], "--top-p 0.0: input should be greater than 0"),
        (["--temperature", "-1"], "--temperature -1.0: input should be greater than or equal to 0"),
    ],
)
def test_bad_decoding_settings_are_one_line_exit_2(args, message, checkpoint, dataset, capsys):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(dataset), *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert store.query_for_tests("SELECT count(*) AS n FROM generations")[0]["n"] == 0


def test_the_ab_viewer_shows_greedy_outputs_after_another_setting_ran(checkpoint, dataset, capsys):
    from core import data
    from core.evaluation import evaluate

    evaluate_json(capsys, checkpoint, dataset)
    rows = evaluate.sample_rows(data.load_split(dataset, "test"), 3)
    greedy = {i: out["output"] for (_, i), out in evaluate.stored_outputs([str(checkpoint)], rows).items()}
    evaluate_json(capsys, checkpoint, dataset, "--repetition", "dry")
    evaluate_json(capsys, checkpoint, dataset, "--temperature", "1")
    assert len(greedy) == 3
    shown = {i: out["output"] for (_, i), out in evaluate.stored_outputs([str(checkpoint)], rows).items()}
    assert shown == greedy
    made = store.query_for_tests("SELECT output FROM generations")
    assert {row["output"] for row in made} - set(greedy.values())  # the other settings wrote other outputs
