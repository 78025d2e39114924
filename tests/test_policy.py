"""The small-LM policy: prompt, scoring, KV-cache consistency, batching, checkpoints, training."""

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the policy needs torch (pip install -e '.[llm]')")

from vlnav import VlnavError  # noqa: E402
from vlnav.config import ConfigError  # noqa: E402
from vlnav.perception.base import Caption  # noqa: E402
from vlnav.perception.candidates import Candidate, TextObservation  # noqa: E402
from vlnav.policy.agent import EpisodeContext  # noqa: E402
from vlnav.policy.batched import BatchDecider  # noqa: E402
from vlnav.policy.controller import candidate_actions  # noqa: E402
from vlnav.policy.model import NavPolicy, PolicyConfig, build_tokenizer, collate  # noqa: E402
from vlnav.policy.prompt import (  # noqa: E402
    LABELS,
    STOP_LABEL,
    Decision,
    candidate_line,
    labels_of,
    mark_words,
    step_text,
)
from vlnav.sim.base import MOVE_FORWARD, TURN_LEFT, TURN_RIGHT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ["kitchen", "bedroom", "hallway", "office"]
THINGS = ["red sofa", "white fridge", "black desk", "green plant"]


def make_obs(rng, n=4):
    idx = sorted(rng.choice(12, size=n, replace=False).tolist())
    cands = [
        Candidate(
            k,
            30.0 * k,
            0.0,
            [0.0, 0.0, 0.0],
            2.0,
            Caption(f"A {rng.choice(ROOMS)} with a {rng.choice(THINGS)} ahead."),
        )
        for k in idx
    ]
    return TextObservation("s", [0.0, 0.0, 0.0], 0.0, cands)


def make_episode(rng, steps=3):
    ds = []
    for _ in range(steps):
        obs = make_obs(rng)
        ds.append(Decision(obs, LABELS[obs.candidates[0].index]))
    ds[-1].label = STOP_LABEL
    return f"walk to the {rng.choice(ROOMS)} and stop by the {rng.choice(THINGS)}.", ds


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    return [make_episode(rng, steps=int(rng.integers(2, 5))) for _ in range(6)]


def tiny_policy(
    corpus, fusion="none", feature_dim=0, head="pointer", stop_head=False, visited=0.0, **kw
):
    texts = [i for i, _ in corpus] + [
        c.caption.text for _, ds in corpus for d in ds for c in d.obs.candidates
    ]
    extra = ["left", "right", "front", "back", "degree", "visited", "passed", "none"]
    tok = build_tokenizer(texts, [*extra, *mark_words()])
    torch.manual_seed(0)
    cfg = PolicyConfig(
        layers=2,
        hidden=32,
        heads=2,
        intermediate=64,
        max_len=2048,
        fusion=fusion,
        feature_dim=feature_dim,
        stop_head=stop_head,
        visited=visited,
        **kw,
    )
    return NavPolicy.create(cfg, tok).eval()


def test_prompt_format_and_labels():
    obs = make_obs(np.random.default_rng(1))
    text = step_text(obs)
    assert text.startswith("<step> ") and text.endswith("stop . <STOP> <ans>")
    for c in obs.candidates:
        assert f"to your {c.direction} is ," in text and f" {LABELS[c.index]}" in text
    assert labels_of(obs) == [LABELS[c.index] for c in obs.candidates] + [STOP_LABEL]


def test_compact_prompt_keeps_the_content_words_and_is_shorter(corpus):
    obs = make_obs(np.random.default_rng(1))
    full, compact = step_text(obs), step_text(obs, "compact")
    assert compact.startswith("<step> ") and compact.endswith("stop . <STOP> <ans>")
    assert len(compact.split()) < 0.7 * len(full.split())
    for c in obs.candidates:
        line = candidate_line(c, "compact")
        assert line.endswith(LABELS[c.index]) and "to your" not in line
        content = [w for w in c.caption.text.lower().rstrip(".").split() if w not in ("a", "with")]
        assert all(w in line.split() for w in content)
    # the policy encodes the style its config names, and scores the same labels
    pol = tiny_policy(corpus)
    pol.config.prompt = "compact"
    ids, _, avail = pol.encode_step(Decision(obs, STOP_LABEL))
    assert pol.tokenizer.decode(ids).split() == compact.split()
    assert sum(avail) == len(obs.candidates) + 1
    with pytest.raises(Exception, match="prompt"):
        PolicyConfig(prompt="verbose")


def test_distances_prompt_adds_each_objects_metres():
    from vlnav.perception.base import Mention

    cap = Caption(
        "A kitchen with a white fridge on the left and a red sofa ahead, a doorway on the right.",
        [Mention("fridge", "white", 2.4, "left"), Mention("sofa", "red", 0.6, "ahead")],
        room="kitchen",
        doorway=True,
    )
    c = Candidate(3, 90.0, 0.0, [0.0, 0.0, 0.0], 2.0, cap)
    line = candidate_line(c, "distances")
    assert line == "kitchen white fridge left 2 , red sofa ahead 1 , doorway right <D>"
    # a caption without structured mentions (a pixel captioner's) reads as compact
    plain = Candidate(3, 90.0, 0.0, [0.0, 0.0, 0.0], 2.0, Caption("A kitchen with a fridge."))
    assert candidate_line(plain, "distances") == candidate_line(plain, "compact")


def _structured_candidate(index, room, mentions, doorway=None):
    from vlnav.perception.base import Mention

    ms = [Mention(cat, col, dist, side) for cat, col, dist, side in mentions]
    text = f"A {room} with " + " and ".join(f"a {m.name} on the {m.side}" for m in ms) + "."
    if doorway:
        text = text[:-1] + f", a doorway on the {doorway}."
    cap = Caption(text, ms, room=room, doorway=bool(doorway))
    return Candidate(index, 30.0 * index, 0.0, [0.0, 0.0, 0.0], 2.0, cap)


def test_matched_prompt_marks_the_instructions_landmarks_in_order():
    from vlnav.policy.prompt import landmark_marks

    instr = "Leave the kitchen, walk past the couch and stop at the white fridge."
    marks = landmark_marks(instr)
    # synonyms name their category ("couch" is the sofa); the last landmark is lmlast; a
    # colour in the instruction marks only objects of that colour
    assert marks == {"kitchen": "lm1", "sofa": "lm2", "white fridge": "lmlast"}
    c = _structured_candidate(
        3, "kitchen", [("fridge", "white", 2.4, "left"), ("desk", "red", 0.6, "ahead")], "right"
    )
    line = candidate_line(c, "matched", marks)
    assert line == "kitchen lm1 white fridge left 2 lmlast , red desk ahead 1 , doorway right <D>"
    other = _structured_candidate(3, "office", [("fridge", "black", 2.4, "left")])
    assert candidate_line(other, "matched", marks) == "office black fridge left 2 <D>"
    # the room seen through a doorway (semantic captioner, beyond=True) is marked too
    c.caption.beyond = "living room"
    line = candidate_line(c, "matched", landmark_marks("Go into the living room."))
    assert line.endswith("doorway right living room lmlast <D>")
    # the room where the move ends (``dest``) and further objects (``more``): the latter
    # only when the instruction names them
    from vlnav.perception.base import Mention

    c.caption.beyond = None
    c.caption.dest = "kitchen"
    c.caption.more = [Mention("sofa", "blue", 3.2, "right"), Mention("bed", "red", 1.0, "left")]
    line = candidate_line(c, "matched", marks)
    assert line == (
        "kitchen lm1 white fridge left 2 lmlast , red desk ahead 1 , blue sofa right 3 lm2 ,"
        " doorway right , into kitchen lm1 <D>"
    )
    assert "sofa" not in candidate_line(c, "distances")
    c.caption.dest, c.caption.more, c.caption.beyond = None, [], "living room"
    # without marks (or for another style) the line is the distances line
    assert candidate_line(c, "matched", {}) == candidate_line(c, "distances")
    # "the table" may be any table: each one is marked
    assert set(landmark_marks("Walk to the table.")) == {"coffee table", "dining table", "desk"}
    # an instruction naming nothing marks nothing
    assert landmark_marks("Walk forward and stop.") == {}


def test_terse_prompt_is_the_matched_line_in_fewer_tokens():
    """``terse``: each room, colour and object name one token, no commas, ``into`` only where
    the move leaves the room the view shows; the tokenizer's vocabulary has the names."""
    from vlnav.perception.base import Mention
    from vlnav.policy.prompt import caption_words, landmark_marks

    marks = landmark_marks("Leave the living room, pass the coffee table, stop at the bed.")
    c = _structured_candidate(
        1,
        "living room",
        [("coffee table", "dark brown", 2.4, "left"), ("sofa", "red", 0.6, "ahead")],
        "left",
    )
    c.caption.beyond, c.caption.dest = "bedroom", "living room"
    c.caption.more = [Mention("bed", "white", 4.2, "right")]
    terse = candidate_line(c, "terse", marks)
    assert terse == (
        "living_room lm1 dark_brown coffee_table left 2 lm2 red sofa ahead 1"
        " white bed right 4 lmlast doorway left bedroom <B>"
    )
    matched = candidate_line(c, "matched", marks)
    assert (
        matched.replace(" ,", "")
        .replace("into living room lm1 ", "")
        .replace("living room", "living_room")
        .replace("dark brown", "dark_brown")
        .replace("coffee table", "coffee_table")
        == terse
    )
    assert len(terse.split()) < 0.75 * len(matched.split())
    c.caption.dest = "bedroom"  # a move into another room says so
    assert candidate_line(c, "terse", marks).endswith("doorway left bedroom into bedroom <B>")
    vocab = set(caption_words(c.caption))
    assert set(terse.split()) - vocab <= {"lm1", "lm2", "lmlast", "2", "1", "4", "right", "<B>"}
    assert PolicyConfig(prompt="terse").prompt == "terse"


def test_a_saved_tokenizer_without_the_terse_names_is_a_one_line_error(tmp_path):
    from vlnav.train import _asset_words, check_tokenizer

    old = build_tokenizer(["a living room with a coffee table ."], ["left", "right"])
    with pytest.raises(VlnavError, match=r"runs/x/tokenizer has no '\w+_\w+'") as e:
        check_tokenizer(old, "terse", "runs/x/tokenizer")
    assert "\n" not in str(e.value)
    check_tokenizer(old, "matched", "runs/x/tokenizer")  # other prompts: nothing to check
    check_tokenizer(build_tokenizer([], _asset_words()), "terse", "runs/x/tokenizer")


def test_matched_prompt_is_what_every_decision_path_encodes():
    """Training (episode_tensors), one episode (EpisodeContext) and the batched decider all
    see the marks of their own episode's instruction."""
    cands = [
        _structured_candidate(0, "kitchen", [("fridge", "white", 2.0, "ahead")]),
        _structured_candidate(4, "bedroom", [("bed", "red", 3.0, "left")], "left"),
    ]
    obs = TextObservation("s", [0.0, 0.0, 0.0], 0.0, cands)
    episodes = [
        ("Walk into the bedroom and stop by the red bed.", [Decision(obs, LABELS[4])]),
        ("Walk to the white fridge and stop.", [Decision(obs, LABELS[0])]),
    ]
    texts = [i for i, _ in episodes] + [c.caption.text for c in cands]
    tok = build_tokenizer(texts, ["lm1", "lm2", "lmlast", "2", "3"])
    torch.manual_seed(0)
    cfg = PolicyConfig(layers=1, hidden=32, heads=2, intermediate=64, prompt="matched")
    pol = NavPolicy.create(cfg, tok).eval()
    item = pol.episode_tensors(*episodes[0])
    text = pol.tokenizer.decode(item["input_ids"])
    assert "bedroom lm1 red bed left 3 lmlast" in text and "fridge ahead 2 <A>" in text
    bd = BatchDecider(pol, 2)
    ref = []
    for slot, (instr, ds) in enumerate(episodes):
        ref.append(EpisodeContext(pol, instr).scores(ds[0])[0])
        bd.start(slot, instr)
    out = bd.decide({0: episodes[0][1][0], 1: episodes[1][1][0]})
    for slot in (0, 1):
        fin = np.isfinite(ref[slot])
        assert np.allclose(out[slot][1][fin], ref[slot][fin], atol=1e-4)
    # the two instructions mark different lines, so the same view scores differently
    assert not np.allclose(ref[0][np.isfinite(ref[0])], ref[1][np.isfinite(ref[1])])


def test_here_prompt_gives_stop_a_line_of_the_agents_surroundings():
    """``here``: candidates read as ``matched``; Stop's line names the room most views show
    and the objects within NEAR metres (nearest first, each once, marked), and every decision
    path scores Stop from that line."""
    from vlnav.policy.prompt import NEAR, landmark_marks, stop_line

    cands = [
        _structured_candidate(0, "kitchen", [("fridge", "white", 1.2, "ahead")]),
        _structured_candidate(2, "kitchen", [("fridge", "white", 1.6, "left")]),
        _structured_candidate(
            4, "bedroom", [("bed", "red", NEAR + 0.5, "left"), ("lamp", "grey", 2.2, "ahead")]
        ),
    ]
    obs = TextObservation("s", [0.0, 0.0, 0.0], 0.0, cands)
    instr = "Leave the bedroom and stop by the white fridge."
    marks = landmark_marks(instr)
    # the fridge (same name in two views: no instance ids) is named once, at its nearest; the
    # bed is beyond NEAR; the lamp is further than the fridge
    assert (
        stop_line(obs, "here", marks)
        == "stop here kitchen , white fridge 1 lmlast , grey lamp 2 <STOP>"
    )
    assert stop_line(obs, "matched", marks) == "stop . <STOP>"
    assert candidate_line(cands[0], "here", marks) == candidate_line(cands[0], "matched", marks)
    # captions without structure (pixel captioners) keep the plain Stop
    plain = TextObservation(
        "s", [0.0] * 3, 0.0, [Candidate(0, 0.0, 0.0, [0.0] * 3, 2.0, Caption("A room."))]
    )
    assert stop_line(plain, "here", marks) == "stop . <STOP>"
    # a further object without a distance (e.g. from imagined trajectories) is left out
    from vlnav.perception.base import Mention

    cands[1].caption.more = [Mention("plant", "green", None, "left")]
    assert "plant" not in stop_line(obs, "here", marks)
    cands[1].caption.more = []
    assert step_text(obs, "here", marks).endswith("lmlast , grey lamp 2 <STOP> <ans>")

    texts = [instr] + [c.caption.text for c in cands]
    tok = build_tokenizer(texts, ["lm1", "lmlast", "1", "2", "stop", "here", ","])
    torch.manual_seed(0)
    cfg = PolicyConfig(layers=1, hidden=32, heads=2, intermediate=64, prompt="here")
    pol = NavPolicy.create(cfg, tok).eval()
    item = pol.episode_tensors(instr, [Decision(obs, STOP_LABEL)])
    ids = item["input_ids"]
    assert "stop here kitchen , white fridge 1 lmlast" in pol.tokenizer.decode(ids)
    # Stop is scored at its own label token, and the three decision paths agree
    assert ids[item["labpos"][0][-1]] == pol.label_ids[-1]
    ref = EpisodeContext(pol, instr).scores(Decision(obs, STOP_LABEL))[0]
    bd = BatchDecider(pol, 1)
    bd.start(0, instr)
    out = bd.decide({0: Decision(obs, STOP_LABEL)})
    fin = np.isfinite(ref)
    assert np.allclose(out[0][1][fin], ref[fin], atol=1e-4)


def test_word_permutation_augmentation_keeps_the_task(corpus):
    from vlnav.policy.augment import WordPermuter, word_classes

    nouns, colours = word_classes()
    assert {"sofa", "couch", "kitchen", "fridge"} <= set(nouns) and "room" not in nouns
    assert {"red", "white"} <= set(colours) and "light" not in colours
    assert not {"left", "right", "ahead", "stop", "doorway", "walk"} & set(nouns + colours)
    pol = tiny_policy(corpus)
    perm = WordPermuter(pol.tokenizer)
    table = perm.table(np.random.default_rng(0))
    assert sorted(table.tolist()) == list(range(len(table)))  # a bijection
    vocab = pol.tokenizer.get_vocab()
    moved = {w for w, i in vocab.items() if table[i] != i}
    assert moved and moved <= set(nouns) | set(colours)
    for w in ("red", "sofa"):  # a class is permuted within itself
        j = int(table[vocab[w]])
        other = pol.tokenizer.convert_ids_to_tokens(j)
        assert (other in colours) == (w in colours)
    assert all(table[int(i)] == i for i in pol.label_ids)  # labels never move
    # the same sequence, augmented: same length and answers, the words replaced consistently
    instr, ds = corpus[0]
    item = pol.episode_tensors(instr, ds)
    ids = np.asarray(item["input_ids"])
    aug = table[ids]
    assert len(aug) == len(ids) and (aug[item["ans"]] == ids[item["ans"]]).all()
    assert (aug != ids).any()
    assert not np.array_equal(table, perm.table(np.random.default_rng(1)))
    # the training config checks its range and refuses it together with visual fusion
    from vlnav.config import ConfigError
    from vlnav.train import load_train_config

    with pytest.raises(ConfigError, match="augment"):
        load_train_config(ROOT / "configs/langnav-small.yaml", ["data.augment=1.5"])
    with pytest.raises(ConfigError, match="waypoints"):
        load_train_config(ROOT / "configs/langnav-small.yaml", ["waypoints=curved"])
    with pytest.raises(ConfigError, match="good_within"):
        load_train_config(ROOT / "configs/langnav-small.yaml", ["optim.good_within=-1"])
    with pytest.raises(ConfigError, match="augment needs policy.fusion: none"):
        load_train_config(
            ROOT / "configs/langnav-small.yaml",
            ["data.augment=0.5", "policy.fusion=add", "features=learned:x"],
        )


def test_controller_turns_the_short_way_then_walks():
    assert candidate_actions(0, 1.0) == [MOVE_FORWARD] * 4
    assert candidate_actions(2, 0.5) == [TURN_LEFT] * 4 + [MOVE_FORWARD] * 2  # 60 left
    assert candidate_actions(11, 0.25) == [TURN_RIGHT] * 2 + [MOVE_FORWARD]  # 30 right
    assert candidate_actions(6, 0.25)[:12] == [TURN_LEFT] * 12  # turn around


def test_path_move_goes_through_the_door_a_straight_move_walks_into(tiny_env):
    """From (3.2, 1.6) facing east, the view ahead has a path waypoint in the kitchen (the
    door frame is in the way of a straight walk). Taking it, the controller follows the shortest path there:
    the agent ends in the kitchen near the waypoint, having walked about the geodesic
    length and never into a wall. The straight walk in that view has no candidate."""
    from vlnav.episodes import Episode, yaw_to_quaternion
    from vlnav.evaluate import run_episode
    from vlnav.metrics import path_length
    from vlnav.perception.base import make_captioner
    from vlnav.policy.agent import DecisionAgent
    from vlnav.policy.controller import path_budget
    from vlnav.sim.base import make_simulator

    start = [3.2, 0.0, 1.6]
    ep = Episode(1, 1, "tiny_0000", start, yaw_to_quaternion(-math.pi / 2),
                 [{"position": [7.0, 0.0, 3.0], "radius": 3.0}], [start], "go",
                 {"geodesic_distance": 4.5})  # fmt: skip
    sim = make_simulator("builtin", tiny_env, sensors=())
    seen = []

    def choose(obs, decision):
        seen.append(obs)
        return "<A>" if len(seen) == 1 else STOP_LABEL  # the view ahead, then stop

    try:
        agent = DecisionAgent(make_captioner("semantic"), choose, waypoints="path")
        rec = run_episode(sim, ep, agent, 200)
        first = next(c for c in seen[0].candidates if c.index == 0)
        end = rec.positions[-1]
        assert end[0] > 4.5, end  # through the door, in the kitchen
        assert math.dist(end, first.waypoint) <= 0.3
        assert path_length(rec.positions) <= first.distance + 0.3
        assert len(rec.actions) <= path_budget(first.distance) + 1
        assert len(seen) == 2 and rec.actions[-1] == 0  # one move, then Stop
        # straight candidates: none ahead (the end of the wall is about 0.55 m away)
        agent = DecisionAgent(make_captioner("semantic"), choose, waypoints="straight")
        seen.clear()
        run_episode(sim, ep, agent, 200)
        assert 0 not in [c.index for c in seen[0].candidates]
    finally:
        sim.close()


def test_path_move_without_a_path_walks_its_view_straight(tiny_env):
    """A path candidate whose waypoint the grid cannot reach (here: moved outside the
    house, more than 0.5 m from any navigable cell) does not end the episode: the controller walks the view straight,
    turn for turn and step for step as a straight candidate would, stopping early when a
    step goes nowhere."""
    from vlnav.episodes import Episode, yaw_to_quaternion
    from vlnav.evaluate import run_episode
    from vlnav.perception.base import make_captioner
    from vlnav.policy.agent import DecisionAgent
    from vlnav.policy.controller import candidate_actions
    from vlnav.sim.base import make_simulator

    start = [1.5, 0.0, 1.5]
    ep = Episode(1, 1, "tiny_0000", start, yaw_to_quaternion(-math.pi / 2),
                 [{"position": [7.0, 0.0, 3.0], "radius": 3.0}], [start], "go",
                 {"geodesic_distance": 5.5})  # fmt: skip
    sim = make_simulator("builtin", tiny_env, sensors=())
    chosen = []

    def choose(obs, decision):
        if chosen:
            return STOP_LABEL
        cand = max(obs.candidates, key=lambda c: c.distance)
        assert sim.is_navigable(cand.waypoint)
        cand.waypoint = [20.0, 0.0, 20.0]  # outside the house: no path ends there
        assert not sim.is_navigable(cand.waypoint)
        chosen.append(cand)
        return LABELS[cand.index]

    try:
        agent = DecisionAgent(make_captioner("semantic"), choose, waypoints="path")
        rec = run_episode(sim, ep, agent, 200)
        cand = chosen[0]
        straight = candidate_actions(cand.index, cand.distance)
        moves = rec.actions[:-1]  # then Stop, at the next decision
        assert rec.actions[-1] == 0 and len(moves) >= 2
        assert moves == straight[: len(moves)]  # the straight walk, perhaps cut short
        assert math.dist(rec.positions[0], rec.positions[-1]) > 0.5  # it did move
    finally:
        sim.close()


@pytest.mark.parametrize("history", ["full", "compact"])
def test_scores_only_available_labels_and_kv_cache_matches_full_pass(corpus, history):
    """The KV cache of one episode against a teacher-forced pass over the whole episode; with
    the compact history the pass hides the lines not chosen by its attention mask and the
    cache by its own."""
    pol = tiny_policy(corpus, history=history)
    instr, ds = corpus[2]
    ctx = EpisodeContext(pol, instr)
    incremental = []
    for d in ds:
        logp, avail = ctx.scores(d)
        assert np.isneginf(logp[~np.array(avail)]).all()  # never an invalid action
        assert np.exp(logp[np.array(avail)]).sum() == pytest.approx(1.0, abs=1e-5)
        incremental.append(logp)
        ctx.commit(d.label)
    # the same decisions scored in one teacher-forced pass over the whole episode
    item = pol.episode_tensors(instr, ds)
    batch = collate([item], pol.tokenizer.pad_token_id)
    assert ("attention_4d" in batch) == (history == "compact")
    with torch.no_grad():
        out = pol.lm(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_4d"),
            output_hidden_states=True,
        )
        hid = out.hidden_states[-1][0]
        full = pol.label_logprobs(hid[batch["ans_pos"]], hid[batch["labpos"]], batch["avail"])
        full = full.numpy()
    for a, b in zip(incremental, full):
        fin = np.isfinite(b)
        assert np.allclose(a[fin], b[fin], atol=1e-4)
    if history == "compact":  # the same weights with the whole history decide otherwise
        whole = EpisodeContext(tiny_policy(corpus), instr)
        first = whole.scores(ds[0])[0]
        whole.commit(ds[0].label)
        second = whole.scores(ds[1])[0]
        fin = np.isfinite(second)
        assert np.allclose(first[fin], incremental[0][fin], atol=1e-5)
        assert not np.allclose(second[fin], incremental[1][fin], atol=1e-3)


def test_stop_bias_lowers_stop_at_decisions_only(corpus, tmp_path):
    """``policy.stop_bias`` is subtracted from Stop's logit when deciding (eval mode), never
    in the training loss; a checkpoint keeps it and ``PolicyAgent(stop_bias=...)`` overrides."""
    from vlnav.policy.agent import PolicyAgent

    pol = tiny_policy(corpus)
    instr, ds = corpus[1]
    h, h_lab, avail = torch.randn(32), torch.randn(13, 32), torch.ones(13, dtype=torch.bool)
    with torch.no_grad():
        before = pol.label_logprobs(h, h_lab, avail)
        pol.config.stop_bias = 2.5
        after = pol.label_logprobs(h, h_lab, avail)
        # Stop's logit lowered by 2.5: the odds of each move against Stop rise by e^2.5
        odds = (after[:-1] - after[-1]).numpy()
        assert odds == pytest.approx((before[:-1] - before[-1] + 2.5).numpy(), abs=1e-4)
        moves = (after[:-1] - after[0]).numpy()
        assert moves == pytest.approx((before[:-1] - before[0]).numpy(), abs=1e-5)
        pol.train()  # the loss sees the plain logits
        assert torch.equal(pol.label_logprobs(h, h_lab, avail), before)
        pol.eval()
    ctx = EpisodeContext(pol, instr)
    logp = ctx.scores(ds[0])[0]
    pol.config.stop_bias = 0.0
    plain = EpisodeContext(pol, instr).scores(ds[0])[0]
    assert logp[-1] < plain[-1]
    pol.config.stop_bias = 1.0
    pol.save(tmp_path / "ck")
    assert NavPolicy.load(tmp_path / "ck")[0].config.stop_bias == 1.0
    assert PolicyAgent(str(tmp_path / "ck")).policy.config.stop_bias == 1.0
    assert PolicyAgent(str(tmp_path / "ck"), stop_bias=3.0).policy.config.stop_bias == 3.0
    with pytest.raises(ConfigError, match="stop_bias"):
        PolicyConfig(stop_bias=100.0)
    with pytest.raises(ConfigError, match="stop_bias"):  # --stop-bias is checked too
        PolicyAgent(str(tmp_path / "ck"), stop_bias=100.0)


@pytest.mark.parametrize("history", ["full", "compact"])
@pytest.mark.parametrize("packed,threads", [(True, 1), (True, 2), (False, 1)])
def test_batched_decisions_equal_single_episode_decisions(corpus, packed, threads, history):
    """Both batched paths: the packed Llama path (vlnav.policy.packed; with 2 torch threads
    as two groups of slots in two threads) and the model's own padded forward; with the
    compact history the first drops the lines not chosen from its caches, the second masks
    them."""

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _batched_against_single(corpus, packed, history)
    finally:
        torch.set_num_threads(before)


def _batched_against_single(corpus, packed, history):
    from vlnav.policy import packed as fast

    pol = tiny_policy(corpus, history=history)
    assert fast.supports(pol.lm)
    ref = []
    for instr, ds in corpus:
        ctx, r = EpisodeContext(pol, instr), []
        for d in ds:
            r.append(ctx.scores(d)[0])
            ctx.commit(d.label)
        ref.append(r)
    bd = BatchDecider(pol, len(corpus), packed=packed)
    assert (bd.fast is not None) == packed
    for i, (instr, _) in enumerate(corpus):
        bd.start(i, instr)
    for t in range(max(len(ds) for _, ds in corpus)):
        active = {i: ds[t] for i, (_, ds) in enumerate(corpus) if t < len(ds)}
        out = bd.decide(active, force={i: d.label for i, d in active.items()})
        for i in active:
            fin = np.isfinite(ref[i][t])
            assert np.allclose(out[i][1][fin], ref[i][t][fin], atol=1e-4)
    if packed and history == "compact":  # the caches hold the kept tokens only
        i, (instr, ds) = max(enumerate(corpus), key=lambda x: len(x[1][1]))
        full = len(pol.episode_tensors(instr, ds)["input_ids"]) - 1  # no label after Stop
        hidden = sum(u >= 0 for u in pol.episode_tensors(instr, ds)["until"])
        assert bd.fast.cached(i) == full - hidden > 0


def test_training_reduces_the_loss(corpus):
    pol = tiny_policy(corpus).train()
    items = [pol.episode_tensors(i, d) for i, d in corpus]
    opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, _ = pol(collate(items, pol.tokenizer.pad_token_id))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("fusion", ["add", "prefix"])
def test_fusion_changes_scores_and_trains(corpus, fusion):
    rng = np.random.default_rng(0)
    for _, ds in corpus:
        for d in ds:
            d.features = rng.standard_normal((12, 8)).astype(np.float32)
    pol = tiny_policy(corpus, fusion=fusion, feature_dim=8)
    item = pol.episode_tensors(*corpus[0])
    if fusion == "prefix":
        assert item["input_ids"].count(pol.img_id) == sum(
            len(d.obs.candidates) for d in corpus[0][1]
        )
    batch = collate([item], pol.tokenizer.pad_token_id)
    loss, _ = pol(batch)
    loss.backward()
    assert pol.proj.weight.grad is not None and pol.proj.weight.grad.abs().sum() > 0
    for _, ds in corpus:
        for d in ds:
            d.features = None


def test_checkpoint_round_trip_and_bad_checkpoints(corpus, tmp_path):
    pol = tiny_policy(corpus)
    pol.save(tmp_path / "ck", extra={"name": "tiny"})
    loaded, meta = NavPolicy.load(tmp_path / "ck")
    assert meta["name"] == "tiny"
    ctx_a, ctx_b = EpisodeContext(pol, corpus[0][0]), EpisodeContext(loaded, corpus[0][0])
    a, b = ctx_a.scores(corpus[0][1][0])[0], ctx_b.scores(corpus[0][1][0])[0]
    assert np.allclose(a, b, equal_nan=True)
    with pytest.raises(VlnavError, match="policy checkpoint not found"):
        NavPolicy.load(tmp_path / "nope")
    pol.lm.save_pretrained(tmp_path / "other")  # another model: no policy.json
    with pytest.raises(VlnavError, match="is not a vlnav policy checkpoint"):
        NavPolicy.load(tmp_path / "other")
    (tmp_path / "ck" / "lm" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(VlnavError, match="cannot load the policy LM from"):
        NavPolicy.load(tmp_path / "ck")


def _train_cmd(data_dir, out, *extra):
    return [
        sys.executable, "-m", "vlnav.cli", "train", str(ROOT / "configs/langnav-small.yaml"),
        "--set", f"env_overrides=[data_dir={data_dir}, scenes.train=2, scenes.val_unseen=1, "
        "episodes.train_per_scene=4, episodes.val_seen_per_scene=1, "
        "episodes.val_unseen_per_scene=2]",
        "--set", f"out={out}", "--set", "data.max_episodes=8", "--set", "optim.steps=8",
        "--set", "optim.batch_size=2", "--set", "optim.warmup=2", "--set", "dagger.rounds=1",
        "--set", "dagger.episodes=2", "--set", "dagger.steps=4", "--set", "checkpoint_every=1",
        "--set", "policy.layers=1", "--set", "policy.hidden=32", "--set", "policy.heads=2",
        "--set", "policy.intermediate=64", "--set", "threads=1", *extra,
    ]  # fmt: skip


def _weights(ck):
    from safetensors.torch import load_file

    return load_file(str(Path(ck) / "lm" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_training_killed_and_resumed_ends_at_the_same_weights(tmp_path, ema):
    """Also with a weight average (optim.ema), which the training state carries."""
    data = tmp_path / "data"
    extra = ("--set", f"optim.ema={ema}")
    full = subprocess.run(
        _train_cmd(data, tmp_path / "full", *extra), cwd=ROOT, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr[-2000:]
    # the same run, killed once it has checkpointed a few imitation steps, then restarted
    proc = subprocess.Popen(
        _train_cmd(data, tmp_path / "cut", *extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "cut" / "state" / "state.pt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.is_file() and torch.load(state, weights_only=False)["step"] >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    step = torch.load(state, weights_only=False)["step"]
    assert 3 <= step < 12, "the kill should land mid-run"
    resumed = subprocess.run(
        _train_cmd(data, tmp_path / "cut", *extra), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "full" / "policy"), _weights(tmp_path / "cut" / "policy")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    cfg = json.loads((tmp_path / "cut" / "policy" / "policy.json").read_text())
    assert cfg["kind"] == "vlnav-policy"
    if ema:  # the saved policy is the average, not the last step's weights
        last = torch.load(state, weights_only=False)
        k = "lm.model.embed_tokens.weight"
        assert last["ema"]["updates"] == last["step"]
        assert torch.allclose(b["model.embed_tokens.weight"], last["ema"]["shadow"][k])
        assert not torch.allclose(b["model.embed_tokens.weight"], last["model"][k])


@pytest.mark.slow
def test_two_training_processes_take_the_same_steps_as_one(tmp_path):
    """Scale-out: ``torchrun --nproc_per_node 2 -m vlnav.cli train`` (two CPU processes, gloo
    DDP; the same code path as several GPUs or nodes) collects the data once and ends at the
    weights a single process reaches."""
    data = tmp_path / "data"
    one = subprocess.run(
        _train_cmd(data, tmp_path / "one"), cwd=ROOT, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-2000:]
    cmd = _train_cmd(data, tmp_path / "two")
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *cmd[1:]]
    two = subprocess.run(ddp, cwd=ROOT, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 processes" in two.stdout
    for name in ("expert.jsonl", "dagger1.jsonl"):  # written once, not once per process
        a = (tmp_path / "one" / "data" / name).read_text().splitlines()
        b = (tmp_path / "two" / "data" / name).read_text().splitlines()
        assert len(a) == len(b) > 0
    a, b = _weights(tmp_path / "one" / "policy"), _weights(tmp_path / "two" / "policy")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k


def test_expert_rates_every_near_best_candidate_good(tiny_env, tiny_episodes):
    """On a real house: the expert's good answers are its label plus every candidate whose
    waypoint ends within 0.5 m (geodesic) of the best one's; every other answer's regret is
    how much farther from the goal it leads (a Stop outside the success radius: the cap);
    both survive the JSON."""
    from vlnav.episodes import load_episodes
    from vlnav.evaluate import run_episode
    from vlnav.perception.base import make_captioner
    from vlnav.policy.agent import DecisionAgent
    from vlnav.policy.expert import REGRET_CAP
    from vlnav.sim.base import make_simulator
    from vlnav.train import _decisions_to_json, _json_to_decisions

    eps = load_episodes(tiny_env.episodes_path("val_unseen")).episodes[:3]
    sim = make_simulator("builtin", tiny_env, sensors=())
    agent = DecisionAgent(make_captioner("semantic"), record=True, max_decisions=8)
    several = 0
    try:
        for i, ep in enumerate(eps):
            run_episode(sim, ep, agent, 300, seed=i)
            assert agent.decisions and agent.decisions[-1].label == STOP_LABEL
            for d in agent.decisions:
                assert d.label in d.good and set(d.good) <= set(labels_of(d.obs))
                assert sorted(d.regret) == sorted(labels_of(d.obs))
                assert all(d.regret[g] == 0 for g in d.good)
                dist = {
                    LABELS[c.index]: sim.geodesic_distance(c.waypoint, ep.goal_position)
                    for c in d.obs.candidates
                }
                d0 = sim.geodesic_distance(d.obs.position, ep.goal_position)
                assert d.distance == pytest.approx(d0, abs=1e-3)  # the stop head's target
                ref = min([d0, *dist.values()]) if d.label == STOP_LABEL else dist[d.label]
                for lab, x in dist.items():
                    if lab not in d.good:
                        want = min(max(x - ref, 0.0), REGRET_CAP)
                        assert d.regret[lab] == pytest.approx(want, abs=1e-3), lab
                if STOP_LABEL not in d.good:
                    assert d.regret[STOP_LABEL] == (0.5 if d0 <= 3.0 else REGRET_CAP)
                if d.label == STOP_LABEL:
                    assert d.good == [STOP_LABEL]
                    continue
                best = dist[d.label]
                assert best == min(dist.values())
                for lab, x in dist.items():
                    ok = lab == d.label or (x <= best + 0.5 and x < d0 - 0.5)
                    assert (lab in d.good) == ok, lab
                # stopping is good too within 2 m of the goal (a 3 m success radius)
                assert (STOP_LABEL in d.good) == (d0 <= 2.0)
                several += len(d.good) > 1
            _, back = _json_to_decisions(
                json.loads(json.dumps(_decisions_to_json(ep.instruction_text, i, agent.decisions)))
            )
            assert [d.good for d in back] == [d.good for d in agent.decisions]
            assert [d.regret for d in back] == [d.regret for d in agent.decisions]
            assert [d.distance for d in back] == [d.distance for d in agent.decisions]
        # a wider margin (optim.good_within) keeps the expert's path and widens the sets
        wide = DecisionAgent(make_captioner("semantic"), record=True, max_decisions=8)
        wide.good_within = 2.0
        run_episode(sim, eps[0], wide, 300, seed=0)
        run_episode(sim, eps[0], agent, 300, seed=0)
        assert [d.label for d in wide.decisions] == [d.label for d in agent.decisions]
        pairs = list(zip(wide.decisions, agent.decisions))
        assert all(set(a.good) >= set(b.good) for a, b in pairs)
        assert any(len(a.good) > len(b.good) for a, b in pairs)
    finally:
        sim.close()
    assert several > 0, "neighbouring views should sometimes tie"


def test_expert_stop_distance_shortens_the_expert_walk(tiny_env, tiny_episodes):
    """``optim.expert_stop``: the recorded expert stops at its first decision within that
    many metres of the goal (Stop its only good answer there) instead of walking on to 1 m,
    so its paths end earlier and every episode still succeeds (3 m radius)."""
    from vlnav.episodes import load_episodes
    from vlnav.evaluate import run_episode
    from vlnav.metrics import compute_metrics
    from vlnav.perception.base import make_captioner
    from vlnav.policy.agent import DecisionAgent
    from vlnav.sim.base import make_simulator
    from vlnav.train import OptimConfig

    with pytest.raises(ConfigError, match="expert_stop"):
        OptimConfig(expert_stop=-1.0)
    eps = load_episodes(tiny_env.episodes_path("val_unseen")).episodes[:4]
    sim = make_simulator("builtin", tiny_env, sensors=())
    near = DecisionAgent(make_captioner("semantic"), record=True, max_decisions=8)
    far = DecisionAgent(make_captioner("semantic"), record=True, max_decisions=8, expert_stop=2.0)
    shorter = 0
    try:
        for i, ep in enumerate(eps):
            a = compute_metrics(run_episode(sim, ep, near, 300, seed=i))
            b = compute_metrics(run_episode(sim, ep, far, 300, seed=i))
            assert a["SR"] == b["SR"] == 1.0
            assert near.decisions[-1].distance <= 2.5  # walks in to 1 m (or no move helps)
            assert all(d.distance > 2.0 for d in far.decisions[:-1])  # stops at the first
            last = far.decisions[-1]
            assert last.label == STOP_LABEL and last.good == [STOP_LABEL]
            assert last.distance <= 2.5
            assert b["TL"] <= a["TL"] + 1e-6
            shorter += b["TL"] < a["TL"] - 0.25
    finally:
        sim.close()
    assert shorter > 0, "some expert walk should end earlier"


def test_good_answers_loss_is_their_total_probability(corpus):
    pol = tiny_policy(corpus)
    instr, ds = corpus[1]
    d = ds[0]
    two = labels_of(d.obs)[:2]
    ds = [Decision(d.obs, two[0], good=two), *ds[1:]]
    batch = collate([pol.episode_tensors(instr, ds)], pol.tokenizer.pad_token_id)
    with torch.no_grad():
        best, acc_best = pol(batch, 0.0, "best")
        good, acc_good = pol(batch, 0.0, "good")
        ctx = EpisodeContext(pol, instr)
        logp = [ctx.scores(ds[0])[0]]
        ctx.commit(ds[0].label)
        for x in ds[1:]:
            logp.append(ctx.scores(x)[0])
            ctx.commit(x.label)
    k = [pol.label_index(lab) for lab in two]
    ref_good = -np.log(np.exp(logp[0][k]).sum())
    ref_good += sum(-lp[pol.label_index(x.label)] for lp, x in zip(logp[1:], ds[1:]))
    ref_best = sum(-lp[pol.label_index(x.label)] for lp, x in zip(logp, ds))
    assert float(good) == pytest.approx(ref_good / len(ds), abs=1e-4)
    assert float(best) == pytest.approx(ref_best / len(ds), abs=1e-4)
    assert float(good) < float(best) and float(acc_good) >= float(acc_best)


def test_regret_term_is_the_expected_regret_of_each_decision(corpus):
    """``optim.regret``: the loss gains w times the mean over decisions of the policy's
    probability of each answer times its regret; a costly wrong answer loses more
    probability in a training step than a cheap one."""
    pol = tiny_policy(corpus)
    instr, ds = corpus[1]
    labs = labels_of(ds[0].obs)
    regret = {lab: 0.0 for lab in labs}
    regret[labs[1]], regret[labs[2]] = 0.5, 4.0  # a near miss and a step the wrong way
    ds = [Decision(ds[0].obs, labs[0], good=[labs[0]], regret=regret), *ds[1:]]
    batch = collate([pol.episode_tensors(instr, ds)], pol.tokenizer.pad_token_id)
    with torch.no_grad():
        plain, _ = pol(batch, 0.0, "good")
        with_regret, _ = pol(batch, 0.0, "good", 0.3)
        ctx = EpisodeContext(pol, instr)
        p = np.exp(ctx.scores(ds[0])[0])
    k1, k2 = pol.label_index(labs[1]), pol.label_index(labs[2])
    expected = (p[k1] * 0.5 + p[k2] * 4.0) / len(ds)  # the other decisions: no regret
    assert float(with_regret - plain) == pytest.approx(0.3 * expected, abs=1e-5)

    # one gradient step with the term, against one without: the wrong way loses more
    # probability relative to the near miss
    def stepped(weight):
        q = copy.deepcopy(pol).train()
        q(batch, 0.0, "good", weight)[0].backward()
        with torch.no_grad():
            for w in q.parameters():
                if w.grad is not None:
                    w -= 0.01 * w.grad
            return np.exp(EpisodeContext(q.eval(), instr).scores(ds[0])[0])

    plain_p, regret_p = stepped(0.0), stepped(5.0)
    assert regret_p[k2] / regret_p[k1] < plain_p[k2] / plain_p[k1]
    assert regret_p[k2] < plain_p[k2]


def test_stop_head_decides_stop_and_the_moves_share_the_rest(corpus, tmp_path):
    """``policy.stop_head``: P(stop) is the head's sigmoid (lowered by the Stop bias when
    deciding), each move gets (1 - P(stop)) times its share among the available moves, a
    decision without moves stops; the checkpoint keeps the head."""
    pol = tiny_policy(corpus, stop_head=True)
    h, h_lab = torch.randn(32), torch.randn(13, 32)
    avail = torch.tensor([k % 3 != 0 for k in range(12)] + [True])
    with torch.no_grad():
        z = pol.stop_head(h).item()
        moves = torch.log_softmax(pol._label_logits(h, h_lab)[:-1][avail[:-1]], -1)
        for bias in (0.0, 1.5):
            pol.config.stop_bias = bias
            logp = pol.label_logprobs(h, h_lab, avail)
            p_stop = 1 / (1 + math.exp(-(z - bias)))
            assert logp[-1].exp().item() == pytest.approx(p_stop, abs=1e-5)
            assert np.isneginf(logp[:-1][~avail[:-1]].numpy()).all()
            want = (moves + math.log(1 - p_stop)).numpy()
            assert logp[:-1][avail[:-1]].numpy() == pytest.approx(want, abs=1e-5)
        none = torch.zeros(13, dtype=torch.bool)
        none[-1] = True
        assert pol.label_logprobs(h, h_lab, none).tolist() == [float("-inf")] * 12 + [0.0]
    pol.config.stop_bias = 0.0
    # incremental, batched and reloaded scores agree
    instr, ds = corpus[2]
    pol.save(tmp_path / "ck")
    loaded = NavPolicy.load(tmp_path / "ck")[0]
    for _, (a, b), c in _teacher_forced(instr, ds, pol, loaded):
        assert np.allclose(a, b) and np.allclose(a, c, atol=1e-4)


def test_stop_head_learns_whether_the_goal_is_within_reach(corpus):
    """Its loss: the moves' cross-entropy among themselves at every decision that has a
    right move, plus a binary cross-entropy at every decision with a recorded goal distance
    on whether that distance is within ``stop_within``; training raises P(stop) where the
    goal is near and lowers it where it is far."""
    pol = tiny_policy(corpus, stop_head=True)
    instr, ds = corpus[3]
    ds = [copy.copy(d) for d in ds]
    for d, dist in zip(ds, [6.0, 4.0, 1.0, 0.5]):
        d.distance = dist
    near = [d.distance <= 2.5 for d in ds]
    batch = collate([pol.episode_tensors(instr, ds)], pol.tokenizer.pad_token_id)
    with torch.no_grad():
        loss, _ = pol(batch, 0.0, "good", 0.0, 1.0, 2.5)
        moves_only, _ = pol(batch, 0.0, "good", 0.0, 0.0, 2.5)
        ctx = EpisodeContext(pol, instr)
        logp = []
        for d in ds:
            logp.append(ctx.scores(d)[0])
            ctx.commit(d.label)
    p_stop = np.exp([lp[-1] for lp in logp])
    bce = -np.mean([np.log(p if y else 1 - p) for p, y in zip(p_stop, near)])
    assert float(loss - moves_only) == pytest.approx(bce, abs=1e-4)
    # no distance recorded (older data): no stop term
    blank = dict(batch, distance=torch.full_like(batch["distance"], float("nan")))
    with torch.no_grad():
        assert float(pol(blank, 0.0, "good", 0.0, 1.0, 2.5)[0]) == pytest.approx(
            float(moves_only), abs=1e-6
        )
    q = copy.deepcopy(pol).train()
    opt = torch.optim.AdamW(q.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        q(batch, 0.0, "good", 0.0, 1.0, 2.5)[0].backward()
        opt.step()
    ctx = EpisodeContext(q.eval(), instr)
    after = []
    for d in ds:
        after.append(np.exp(ctx.scores(d)[0][-1]))
        ctx.commit(d.label)
    for a, b, y in zip(after, p_stop, near):
        assert (a > b) == y
    assert min(a for a, y in zip(after, near) if y) > max(a for a, y in zip(after, near) if not y)


def test_stop_head_refuses_expert_data_without_goal_distances(corpus, tmp_path):
    from vlnav.train import _decisions_to_json, _read_expert

    instr, ds = corpus[0]
    path = tmp_path / "expert.jsonl"
    path.write_text(json.dumps(_decisions_to_json(instr, 0, ds)) + "\n")
    assert _read_expert(path)[0][0] == instr  # fine without the stop head
    with pytest.raises(VlnavError, match="expert.jsonl has no goal distances"):
        _read_expert(path, distances=True)
    ds = [copy.copy(d) for d in ds]  # the fixture's decisions stay as they are
    for d in ds:
        d.distance = 3.0
    path.write_text(json.dumps(_decisions_to_json(instr, 0, ds)) + "\n")
    assert [d.distance for d in _read_expert(path, distances=True)[0][1]] == [3.0] * len(ds)


def _teacher_forced(instr, ds, pol, *others, slot=0, slots=1):
    """Step ``ds`` teacher-forced (each decision's recorded label is taken) through a
    KV-cache context of ``pol`` and of each of ``others``, and through a batched decider of
    ``pol`` (``slots`` episodes, this one in ``slot``): yields (decision, [each context's
    scores], the batched scores)."""
    ctxs = [EpisodeContext(p, instr) for p in (pol, *others)]
    dec = BatchDecider(pol, slots)
    dec.start(slot, instr)
    for d in ds:
        scores = [c.scores(d)[0] for c in ctxs]
        batched = dec.decide({slot: d})[slot][1]
        for c in ctxs:
            c.commit(d.label)
        dec.pending[slot] = [int(pol.label_ids[pol.label_index(d.label)])]
        yield d, scores, batched


def _assert_three_paths_agree(pol, instr, ds, item, slot):
    """The teacher-forced pass over ``item`` (``episode_tensors(instr, ds)``), the KV-cache
    context and the batched decider (episode in ``slot``) give the same label scores."""
    batch = collate([item], pol.tokenizer.pad_token_id)
    with torch.no_grad():
        hid = pol.lm(input_ids=batch["input_ids"], output_hidden_states=True).hidden_states[-1]
        full = pol.label_logprobs(hid[0, batch["ans_pos"]], hid[0][batch["labpos"]], batch["avail"])
    steps = _teacher_forced(instr, ds, pol, slot=slot, slots=2)
    for t, (_, (inc,), bat) in enumerate(steps):
        fin = np.isfinite(inc)
        assert np.allclose(inc[fin], full[t].numpy()[fin], atol=1e-4)
        assert np.allclose(inc[fin], bat[fin], atol=1e-4)


def _room_obs(room, objects, x=0.0, views=(0, 3, 6)):
    """An observation at (x, 0, 0) whose views all show ``room`` and ``objects`` ((category,
    colour, metres) each, ahead), every waypoint 1 m further along x."""
    from vlnav.perception.base import Mention

    cap = Caption(
        f"A {room}.", [Mention(cat, col, dist, "ahead") for cat, col, dist in objects], room=room
    )
    cands = [Candidate(k, 30.0 * k, 0.0, [x + 1.0, 0, 0], 2.0, cap) for k in views]
    return TextObservation("s", [x, 0, 0], 0.0, cands)


def test_visited_mark_names_the_moves_back_to_earlier_decisions(corpus):
    """``policy.visited``: a candidate whose waypoint lies within the radius of an earlier
    decision's position ends with ``visited``; the teacher-forced pass, the KV-cache
    context and the batched decider all mark the same candidates."""
    from vlnav.policy.prompt import visited_views

    def obs_at(pos, waypoints):
        cands = [
            Candidate(k, 30.0 * k, 0.0, list(w), 2.0, Caption("A kitchen with a red sofa ahead."))
            for k, w in waypoints
        ]
        return TextObservation("s", list(pos), 0.0, cands)

    a = obs_at([0, 0, 0], [(0, [2, 0, 0]), (6, [-2, 0, 0])])
    b = obs_at([2, 0, 0], [(0, [4, 0, 0]), (5, [0.6, 0.3, 0.6]), (6, [0.5, 0, 1.5])])
    c = obs_at([4, 0, 0], [(0, [6, 0, 0]), (6, [2.3, 0, 0.4])])
    assert visited_views(b, [a.position], 1.0) == {5}  # 0.85 m on the floor; 1.58 m is not
    assert visited_views(b, [a.position], 2.0) == {5, 6}
    assert visited_views(b, [a.position], 0.0) == set()  # off
    assert visited_views(c, [a.position, b.position], 1.0) == {6}
    ds = [Decision(a, LABELS[0]), Decision(b, LABELS[0]), Decision(c, STOP_LABEL)]
    instr = corpus[0][0]
    pol = tiny_policy(corpus, visited=1.0)
    item = pol.episode_tensors(instr, ds)
    text = pol.tokenizer.decode(item["input_ids"])
    steps = text.split("<step>")[1:]
    assert ["visited" in x for x in steps] == [False, True, True]
    assert steps[1].count("visited") == 1 and "ahead . visited <F>" in steps[1]
    assert steps[2].count("visited") == 1 and "ahead . visited <G>" in steps[2]
    plain = tiny_policy(corpus).episode_tensors(instr, ds)
    assert len(item["input_ids"]) == len(plain["input_ids"]) + 2
    _assert_three_paths_agree(pol, instr, ds, item, slot=1)


def test_progress_words_name_the_landmarks_reached_so_far(corpus):
    """``policy.progress``: each decision begins with the instruction's landmarks reached at
    the decisions so far (a room when most views show it, an object within 2.5 m), in the
    instruction's order; training, the KV-cache context and the batched decider agree."""
    from vlnav.policy.prompt import landmark_marks, passed_marks

    instr = "Walk past the red sofa into the kitchen, then stop by the white fridge."
    marks = landmark_marks(instr)
    assert marks == {"red sofa": "lm1", "kitchen": "lm2", "white fridge": "lmlast"}

    a = _room_obs("living room", [("sofa", "red", 3.4), ("fridge", "silver", 1.0)], x=0)
    b = _room_obs("living room", [("sofa", "red", 1.2), ("sofa", "blue", 0.5)], x=2)
    c = _room_obs("kitchen", [("fridge", "white", 2.0)], x=4)
    assert passed_marks([a], marks) == []  # the sofa 3.4 m away; a fridge of another colour
    assert passed_marks([a, b], marks) == ["lm1"]
    assert passed_marks([a, b, c], marks) == ["lm1", "lm2", "lmlast"]
    assert passed_marks([c], None) == []  # unmarked prompts
    with pytest.raises(ConfigError, match="progress"):
        PolicyConfig(prompt="compact", progress=True)
    ds = [Decision(a, LABELS[0]), Decision(b, LABELS[3]), Decision(c, STOP_LABEL)]
    corpus = [(instr, ds), *corpus]
    pol = tiny_policy(corpus, prompt="matched", progress=True)
    item = pol.episode_tensors(instr, ds)
    text = pol.tokenizer.decode(item["input_ids"])
    heads = [x.split()[:5] for x in text.split("<step>")[1:]]
    assert [h[:2] for h in heads] == [["passed", "none"], ["passed", "lm1"]] + [["passed", "lm1"]]
    assert heads[2][:4] == ["passed", "lm1", "lm2", "lmlast"]
    _assert_three_paths_agree(pol, instr, ds, item, slot=0)


def test_start_turn_marks_the_views_of_the_instructions_opening_turn(corpus):
    """``policy.start_turn``: at the first decision only, each candidate in the direction of
    the instruction's opening turn ends with ``turn``; an instruction that does not open
    with a turn marks nothing; training, the KV-cache context and the batched decider agree."""
    from vlnav.policy.prompt import start_turn, start_turn_views

    assert start_turn("Make a right and exit the kitchen, then stop.") == "right"
    assert start_turn("Turn to your left, then walk out of the bedroom.") == "left"
    assert start_turn("Spin around and leave the washroom.") == "around"
    assert start_turn("Turn to face the other way and walk past the sofa.") == "around"
    # the first clause is not a turn: a later "turn left" says nothing of the start
    assert start_turn("Walk out of the bedroom and turn left at the sofa.") is None
    assert start_turn("At the wardrobe, turn right.") is None
    assert start_turn_views("left") == {1, 2, 3, 4, 5} and start_turn_views(None) == set()
    with pytest.raises(ConfigError, match="start_turn"):
        PolicyConfig(prompt="compact", start_turn=True)

    views = [0, 3, 6, 9]  # ahead, 90 degrees left, back, 90 degrees right
    a = _room_obs("kitchen", [("fridge", "white", 2.0)], x=0, views=views)
    b = _room_obs("hallway", [("sofa", "red", 2.0)], x=2, views=views)
    instr = "Make a right and walk past the red sofa, then turn left by the white fridge."
    ds = [Decision(a, LABELS[9]), Decision(b, LABELS[3]), Decision(b, STOP_LABEL)]
    corpus = [(instr, ds), *corpus]
    pol = tiny_policy(corpus, prompt="matched", start_turn=True)
    item = pol.episode_tensors(instr, ds)
    steps = pol.tokenizer.decode(item["input_ids"]).split("<step>")[1:]
    assert [x.count(" turn ") for x in steps] == [1, 0, 0]
    assert "turn <J>" in steps[0]  # 90 degrees right, and no other view
    plain = tiny_policy(corpus, prompt="matched").episode_tensors(instr, ds)
    assert len(item["input_ids"]) == len(plain["input_ids"]) + 1
    opening = "Walk out of the kitchen, then make a right and stop by the white fridge."
    item = pol.episode_tensors(opening, ds)
    assert " turn " not in pol.tokenizer.decode(item["input_ids"]).split("<ans>")[0]
    _assert_three_paths_agree(pol, instr, ds, pol.episode_tensors(instr, ds), slot=0)


def test_stop_gate_takes_stop_away_where_the_final_landmark_is_not_around(corpus, tmp_path):
    """``policy.stop_gate``: when deciding (KV-cache context and batched decider alike), Stop
    is unavailable unless the instruction's final landmark is around the agent (an object of
    its category and colour within the gate's metres, or the room most views show); the
    training sequence keeps Stop available."""
    from vlnav.policy.prompt import landmark_marks, stop_allowed

    instr = "Walk past the red sofa, then stop by the white fridge."
    marks = landmark_marks(instr)

    def obs_at(room, objects, n=3):
        return _room_obs(room, objects, views=range(n))

    far = obs_at("kitchen", [("fridge", "white", 3.4), ("sofa", "red", 1.0)])
    wrong = obs_at("kitchen", [("fridge", "silver", 1.0)])
    near = obs_at("kitchen", [("fridge", "white", 2.9)])
    assert not stop_allowed(far, marks, 3.0) and stop_allowed(far, marks, 3.5)
    assert not stop_allowed(wrong, marks, 3.0)  # a fridge of another colour
    assert stop_allowed(near, marks, 3.0)
    room_goal = landmark_marks("Leave the bedroom and wait in the kitchen.")
    assert stop_allowed(wrong, room_goal, 3.0)  # the final landmark is the room it is in
    assert not stop_allowed(obs_at("hallway", []), room_goal, 3.0)
    assert stop_allowed(far, None, 3.0) and stop_allowed(obs_at("hallway", [], 0), marks, 3.0)
    # named with a colour first, then without: the final landmark is any object of its kind
    again = landmark_marks("Walk past the white fridge, then stop at the fridge.")
    assert stop_allowed(obs_at("kitchen", [("fridge", "white", 1.0)]), again, 2.0)
    assert stop_allowed(wrong, again, 2.0)
    first = landmark_marks("Walk past the fridge, then stop by the white fridge.")
    assert not stop_allowed(wrong, first, 2.0)  # only the white one is the final landmark
    with pytest.raises(ConfigError, match="stop_gate"):
        PolicyConfig(stop_gate=-1.0)

    ds = [Decision(far, LABELS[0]), Decision(near, STOP_LABEL)]
    corpus = [(instr, ds), *corpus]
    for stop_head in (False, True):
        pol = tiny_policy(corpus, stop_head=stop_head, stop_gate=3.0)
        free = tiny_policy(corpus, stop_head=stop_head)
        assert pol.episode_tensors(instr, ds)["avail"] == free.episode_tensors(instr, ds)["avail"]
        for d, (gated, plain), bat in _teacher_forced(instr, ds, pol, free):
            if d.obs is far:  # Stop gone; the moves keep their order and sum to one
                assert gated[-1] == -np.inf and bat[-1] == -np.inf and np.isfinite(plain[-1])
                assert np.argsort(gated[:3]).tolist() == np.argsort(plain[:3]).tolist()
                assert np.isclose(np.exp(gated[:3]).sum(), 1.0, atol=1e-5)
            else:
                assert np.allclose(gated[:3], plain[:3], atol=1e-5) and np.isfinite(gated[-1])
            assert np.allclose(gated[np.isfinite(gated)], bat[np.isfinite(bat)], atol=1e-4)
    from vlnav.policy.agent import PolicyAgent  # a checkpoint keeps it; --stop-gate overrides

    pol.save(tmp_path / "ck")
    assert NavPolicy.load(tmp_path / "ck")[0].config.stop_gate == 3.0
    assert PolicyAgent(str(tmp_path / "ck"), stop_gate=0.0).policy.config.stop_gate == 0.0
    with pytest.raises(ConfigError, match="stop_gate"):
        PolicyAgent(str(tmp_path / "ck"), stop_gate=-2.0)


def test_corrupt_observation_cache_is_a_one_line_error_also_in_worker_processes(tmp_path):
    """A run folder whose observation cache is not a database: `vlnav train` (two collecting
    processes, whose pool would restart a failing worker for ever) exits at once with a
    one-line error naming the file."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "obs_cache.sqlite").write_bytes(b"not a database at all " * 100)
    cmd = _train_cmd(tmp_path / "data", out, "--set", "collect_workers=2")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "obs_cache.sqlite" in last and "not a database" in last, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_expert_collection_in_two_processes_writes_the_same_file(tmp_path):
    """``collect_workers: 2`` walks the expert episodes in two processes and writes what one
    process writes, in the same order, also when it resumes a partial file."""
    from vlnav.train import Trainer, load_train_config

    cmd = _train_cmd(tmp_path / "data", tmp_path / "run")
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    cfg = load_train_config(ROOT / "configs/langnav-small.yaml", sets)
    tr = Trainer(cfg, progress=False)
    eps = tr.episodes()
    assert len(eps) == 8
    one, two, resumed = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "res.jsonl"
    tr.collect(one, eps)
    tr.collect(two, eps, workers=2)
    lines = one.read_text().splitlines()
    assert len(lines) == 8 and two.read_text().splitlines() == lines
    resumed.write_text("\n".join(lines[:3]) + "\n")
    tr.collect(resumed, eps, workers=2)
    assert resumed.read_text().splitlines() == lines


def test_run_folder_data_from_other_settings_is_refused(tiny_env, tmp_path):
    """The data in a run folder is reused on resume, so a config whose expert labels or
    observations differ (``optim.expert_stop``, the captioner, ...) is a one-line error
    naming the setting; the same config resumes; folders from before the check pass."""
    from vlnav.train import TrainConfig, Trainer

    cfg = TrainConfig(out=str(tmp_path / "run"))
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    Trainer(cfg, env=tiny_env, progress=False)._check_labels(data)
    assert json.loads((data / "labels.json").read_text())["expert_stop"] == 1.0
    (data / "expert.jsonl").write_text("")
    Trainer(cfg, env=tiny_env, progress=False)._check_labels(data)  # the same: resumes
    cfg.optim.expert_stop = 2.0
    with pytest.raises(ConfigError, match=r"expert_stop=1.0 but the config says 2.0"):
        Trainer(cfg, env=tiny_env, progress=False)._check_labels(data)
    cfg.optim.expert_stop = 1.0
    cfg.captioner.kwargs = {"max_objects": 3}
    with pytest.raises(ConfigError, match="collected with captioner="):
        Trainer(cfg, env=tiny_env, progress=False)._check_labels(data)
    (data / "labels.json").unlink()  # an older folder: data without labels.json
    Trainer(cfg, env=tiny_env, progress=False)._check_labels(data)
    assert not (data / "labels.json").exists()


def test_paraphrases_add_sequences_over_the_same_expert_decisions(
    tiny_env, tiny_episodes, corpus, tmp_path
):
    """``data.paraphrases: 3``: each training path gets two more instructions from the
    env's speaker with other seeds (the same on every call), and the expert data yields one
    sequence per instruction over the same decisions."""
    from vlnav.train import TrainConfig, Trainer, _decisions_to_json, _read_expert

    cfg = TrainConfig(out=str(tmp_path / "run"))
    cfg.data.paraphrases = 3
    trainer = Trainer(cfg, env=tiny_env, progress=False)
    para = trainer.paraphrases(tmp_path / "run" / "data", tiny_episodes)
    assert sorted(para) == sorted(str(e.episode_id) for e in tiny_episodes)
    own = {str(e.episode_id): e.instruction_text for e in tiny_episodes}
    assert all(len(v) == 2 and all(v) for v in para.values())
    assert any(own[k] not in v for k, v in para.items())  # not copies of the original
    assert trainer.paraphrases(tmp_path / "again", tiny_episodes) == para  # deterministic
    # a speaker is asked about the episodes trained on only
    assert sorted(trainer.paraphrases(tmp_path / "two", tiny_episodes[:2])) == sorted(
        str(e.episode_id) for e in tiny_episodes[:2]
    )
    instr, ds = corpus[0]
    path = tmp_path / "expert.jsonl"
    eid = str(tiny_episodes[0].episode_id)
    path.write_text(json.dumps(_decisions_to_json(instr, eid, ds)) + "\n")
    items = _read_expert(path, paraphrases=para)
    assert [i for i, _ in items] == [instr, *para[eid]]
    assert all([d.label for d in x] == [d.label for d in ds] for _, x in items)
    cfg.data.paraphrases = 1
    assert Trainer(cfg, env=tiny_env, progress=False).paraphrases(tmp_path / "x", []) == {}
    cfg.data.paraphrases = 2
    tiny_env.episodes.speaker = "route"
    with pytest.raises(ConfigError, match="data.paraphrases needs a speaker"):
        Trainer(cfg, env=tiny_env, progress=False).paraphrases(tmp_path / "y", tiny_episodes)


def test_weight_average_follows_the_weights_and_survives_a_state_round_trip(corpus, tmp_path):
    """optim.ema: the average after n updates is the ramped exponential average of the
    weights it saw; ``averaged`` gives a copy with it (the model is left alone); the state
    saved with the training state restores it exactly."""
    from vlnav.train import _EMA, _load_state, _save_state

    pol = tiny_policy(corpus).train()
    items = [pol.episode_tensors(i, d) for i, d in corpus]
    opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
    ema = _EMA(pol, 0.9)
    name = "lm.model.embed_tokens.weight"
    want = pol.state_dict()[name].clone()
    for n in range(1, 6):
        loss, _ = pol(collate(items, pol.tokenizer.pad_token_id))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(pol)
        d = min(0.9, (1 + n) / (10 + n))
        want = d * want + (1 - d) * pol.state_dict()[name]
    assert torch.allclose(ema.shadow[name], want, atol=1e-6)
    assert not torch.allclose(ema.shadow[name], pol.state_dict()[name])  # it lags
    avg = ema.averaged(pol)
    assert torch.equal(avg.state_dict()[name], ema.shadow[name])
    assert not torch.equal(pol.state_dict()[name], ema.shadow[name])  # the model unchanged
    _save_state(tmp_path, pol, opt, 5, ema)
    back = _EMA(pol, 0.9)
    back.load_state_dict(_load_state(tmp_path)["ema"])
    assert back.updates == 5 and all(torch.equal(back.shadow[k], v) for k, v in ema.shadow.items())


def test_device_names_are_checked():
    from vlnav.policy.agent import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(VlnavError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    with pytest.raises(VlnavError, match="torch sees"):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)"
)


@needs_cuda
@pytest.mark.parametrize("packed", [True, False])
def test_batched_decisions_on_a_gpu_equal_the_cpus(corpus, packed):
    """The batched decider (packed and padded paths) on a GPU gives the CPU's scores, in
    float32, and nearly all its decisions in bfloat16."""
    cpu = tiny_policy(corpus)
    gpu = copy.deepcopy(cpu).to("cuda")
    assert gpu.label_ids.device.type == "cuda"  # moved with the weights

    def rounds(pol):
        bd = BatchDecider(pol, len(corpus), packed=packed)
        for i, (instr, _) in enumerate(corpus):
            bd.start(i, instr)
        out = []
        for t in range(max(len(ds) for _, ds in corpus)):
            active = {i: ds[t] for i, (_, ds) in enumerate(corpus) if t < len(ds)}
            res = bd.decide(active)
            out += [res[i][1] for i in sorted(active)]
            for i, d in active.items():
                bd.pending[i] = [int(pol.label_ids[pol.label_index(d.label)])]
        return out

    a, b = rounds(cpu), rounds(gpu)
    for x, y in zip(a, b, strict=True):
        fin = np.isfinite(x)
        assert (np.isfinite(y) == fin).all() and np.allclose(x[fin], y[fin], atol=1e-3)
    c = rounds(gpu.to(torch.bfloat16))
    same = np.mean([np.argmax(x) == np.argmax(z) for x, z in zip(a, c)])
    assert same >= 0.8, same


@needs_cuda
def test_training_steps_on_a_gpu_follow_the_cpus(corpus):
    """The training loss (with fusion: the gather of each view's features) runs on a GPU and
    takes the CPU's steps."""
    rng = np.random.default_rng(0)
    feats = {id(d): rng.standard_normal((12, 8)).astype(np.float32) for _, ds in corpus for d in ds}
    for _, ds in corpus:
        for d in ds:
            d.features = feats[id(d)]
    try:
        cpu = tiny_policy(corpus, fusion="add", feature_dim=8).train()
        gpu = copy.deepcopy(cpu).to("cuda").train()
        items = [cpu.episode_tensors(i, d) for i, d in corpus]
        batch = collate(items, cpu.tokenizer.pad_token_id)
        losses = []
        for pol in (cpu, gpu):
            opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
            dev = next(pol.parameters()).device
            run = []
            for _ in range(5):
                loss, _ = pol({k: v.to(dev) for k, v in batch.items()})
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.append(loss.item())
            losses.append(run)
        assert np.allclose(losses[0], losses[1], rtol=1e-3), losses
        assert losses[1][-1] < losses[1][0]
    finally:
        for _, ds in corpus:
            for d in ds:
                d.features = None


def test_stop_good_within_sets_where_stop_counts_as_a_good_answer(corpus, tmp_path):
    """optim.stop_good_within: when the data is read, Stop is among the good answers exactly
    where the recorded goal distance is within it (a Stop label stays the only answer)."""
    from vlnav.train import _decisions_to_json, _read_expert

    rng = np.random.default_rng(1)
    data = copy.deepcopy(corpus)
    for _, ds in data:
        for d in ds:
            d.distance = float(rng.uniform(0.5, 5.0))
            near = d.distance <= 2.0 and d.label != STOP_LABEL
            d.good = [d.label] + [STOP_LABEL] * near
    path = tmp_path / "expert.jsonl"
    path.write_text(
        "".join(json.dumps(_decisions_to_json(i, k, ds)) + "\n" for k, (i, ds) in enumerate(data))
    )
    as_collected = _read_expert(path)
    wider = _read_expert(path, stop_good_within=3.0)
    moved = 0
    for (_, a), (_, b) in zip(as_collected, wider, strict=True):
        for x, y in zip(a, b, strict=True):
            if x.label == STOP_LABEL:
                assert y.good == x.good == [STOP_LABEL]
                continue
            assert (STOP_LABEL in y.good) == (y.distance <= 3.0)
            assert [g for g in y.good if g != STOP_LABEL] == [g for g in x.good if g != STOP_LABEL]
            moved += (STOP_LABEL in y.good) != (STOP_LABEL in x.good)
    assert moved > 0
    for _, ds in data:
        for d in ds:
            d.distance = None
    path.write_text(json.dumps(_decisions_to_json(*data[0][:1], 0, data[0][1])) + "\n")
    with pytest.raises(VlnavError, match="no goal distances for optim.stop_good_within"):
        _read_expert(path, stop_good_within=3.0)
