import copy
import gzip
import json
import math

import pytest

from vlnav.episodes import (
    Episode,
    EpisodeFormatError,
    EpisodeSet,
    build_vocab,
    detokenize,
    load_episodes,
    quaternion_to_yaw,
    rotate_vector,
    save_episodes,
    split_words,
    tokenize,
    yaw_to_quaternion,
)


def r2r_file_dict():
    """An R2R-CE-schema object in the file's key order, with unknown keys at every level."""
    return {
        "episodes": [
            {
                "episode_id": 1,
                "trajectory_id": 4,
                "scene_id": "mp3d/7y3sRwLe3Va/7y3sRwLe3Va.glb",
                "start_position": [-16.267, 0.152, 0.712],
                "start_rotation": [0, 0.9996, 0, -0.0274],
                "info": {"geodesic_distance": 6.42, "difficulty": "easy"},
                "goals": [{"position": [-12.5, 0.152, 4.1], "radius": 3.0, "note": "x"}],
                "instruction": {
                    "instruction_text": "Walk past the sofa, then stop.",
                    "instruction_tokens": [7, 5, 6, 4, 8, 3, 2] + [0] * 193,
                    "instruction_id": 17,
                },
                "reference_path": [[-16.267, 0.152, 0.712], [-12.5, 0.152, 4.1]],
                "augmented": True,
            },
            {
                "episode_id": 2,
                "trajectory_id": 4,
                "scene_id": "mp3d/7y3sRwLe3Va/7y3sRwLe3Va.glb",
                "start_position": [1, 2, 3],
                "start_rotation": [0.0, 0.0, 0.0, 1.0],
                "info": {"geodesic_distance": 0},
                "goals": [{"position": [1, 2, 3], "radius": 3.0}],
                "instruction": {"instruction_text": "Stop.", "instruction_tokens": []},
                "reference_path": [[1, 2, 3]],
            },
        ],
        "instruction_vocab": {
            "word_list": ["<pad>", "<unk>", ".", "past", "sofa", "the", "then", "walk", "stop"],
            "num_vocab": 9,
            "UNK_INDEX": 1,
            "PAD_INDEX": 0,
            "custom": [1, 2],
        },
        "split": "val_seen",
    }


def write_gz(path, obj):
    path.write_bytes(gzip.compress(json.dumps(obj).encode(), mtime=0))
    return path


def test_r2r_file_round_trips_byte_for_byte(tmp_path):
    src = write_gz(tmp_path / "val_seen.json.gz", r2r_file_dict())
    ep_set = load_episodes(src)
    out = save_episodes(tmp_path / "out" / "val_seen.json.gz", ep_set)
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(src.read_bytes())
    assert out.read_bytes() == src.read_bytes()  # deterministic gzip (mtime 0)

    ep = ep_set.episodes[0]
    assert ep.episode_id == 1 and isinstance(ep.episode_id, int)
    assert ep.goal_position == [-12.5, 0.152, 4.1]
    assert ep.geodesic_distance == 6.42
    assert ep.extra == {"augmented": True}
    assert ep.instruction_extra == {"instruction_id": 17}
    assert ep_set.extra == {"split": "val_seen"}
    assert ep_set.vocab["custom"] == [1, 2]


def test_round_trip_plain_json_and_key_order_independent(tmp_path):
    obj = r2r_file_dict()
    obj["episodes"][0] = dict(reversed(list(obj["episodes"][0].items())))
    src = tmp_path / "eps.json"
    src.write_text(json.dumps(obj))
    first = load_episodes(src)
    out = save_episodes(tmp_path / "again.json.gz", first)
    assert load_episodes(out) == first
    assert json.loads(gzip.decompress(out.read_bytes())) == obj


def test_file_without_vocab_or_tokens(tmp_path):
    obj = r2r_file_dict()
    del obj["instruction_vocab"]
    del obj["episodes"][1]["instruction"]["instruction_tokens"]
    ep_set = load_episodes(write_gz(tmp_path / "rxr.json.gz", obj))
    assert ep_set.vocab is None and ep_set.episodes[1].instruction_tokens is None
    out = save_episodes(tmp_path / "rxr2.json.gz", ep_set)
    assert json.loads(gzip.decompress(out.read_bytes())) == obj


def bad(mutate):
    obj = r2r_file_dict()
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("episodes"), "no 'episodes' list"),
        (
            lambda o: o["episodes"][1].pop("scene_id"),
            r"episode 1 \(episode_id=2\): missing key 'scene_id'",
        ),
        (lambda o: o["episodes"][0].pop("reference_path"), "episode 0 .*'reference_path'"),
        (lambda o: o["episodes"][1].pop("episode_id"), r"episode 1: missing key 'episode_id'"),
        (lambda o: o["episodes"][0]["instruction"].pop("instruction_text"), "instruction_text"),
        (
            lambda o: o["episodes"][0].update(start_position=[1, 2]),
            "'start_position' must be 3 numbers",
        ),
        (
            lambda o: o["episodes"][0].update(start_rotation=[0, 0, 1]),
            "'start_rotation' must be 4 numbers",
        ),
        (lambda o: o["episodes"][0]["goals"][0].update(position="here"), r"'goals\[0\].position'"),
        (lambda o: o["episodes"][0].update(goals=[]), "'goals' must be a non-empty list"),
        (
            lambda o: o["episodes"][1].update(reference_path=[]),
            "episode 1 .*'reference_path' must be a non-empty",
        ),
        (
            lambda o: o["episodes"][0]["reference_path"].append([1, "a", 2]),
            r"'reference_path\[2\]'",
        ),
        (lambda o: o["episodes"][0].update(info={}), "geodesic_distance"),
    ],
)
def test_malformed_episodes_name_index_and_key(tmp_path, mutate, message):
    path = write_gz(tmp_path / "bad.json.gz", bad(mutate))
    with pytest.raises(EpisodeFormatError, match=message) as err:
        load_episodes(path)
    assert "bad.json.gz" in str(err.value) and "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(EpisodeFormatError, match="not found"):
        load_episodes(tmp_path / "missing.json.gz")
    (tmp_path / "plain.json.gz").write_text("{}")
    with pytest.raises(EpisodeFormatError, match="not a gzip file"):
        load_episodes(tmp_path / "plain.json.gz")
    (tmp_path / "broken.json.gz").write_bytes(gzip.compress(b'{"episodes": ['))
    with pytest.raises(EpisodeFormatError, match="not valid JSON"):
        load_episodes(tmp_path / "broken.json.gz")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(b'{"episodes": []}')[:-6])
    with pytest.raises(EpisodeFormatError, match="corrupt gzip"):
        load_episodes(tmp_path / "cut.json.gz")


def test_build_and_round_trip_new_set(tmp_path):
    texts = ["Walk past the sofa, then stop.", "Turn left at John's door."]
    vocab = build_vocab(texts)
    assert vocab["word_list"][:2] == ["<pad>", "<unk>"]
    assert vocab["word_list"][2:] == sorted(vocab["word_list"][2:])
    assert vocab["num_vocab"] == len(vocab["word_list"])
    episodes = [
        Episode(
            episode_id=i,
            trajectory_id=i,
            scene_id="house0",
            start_position=[0.0, 0.0, 0.0],
            start_rotation=yaw_to_quaternion(0.0),
            goals=[{"position": [2.0, 0.0, 0.0], "radius": 3.0}],
            reference_path=[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
            instruction_text=text,
            info={"geodesic_distance": 2.0},
            instruction_tokens=tokenize(text, vocab),
        )
        for i, text in enumerate(texts)
    ]
    ep_set = EpisodeSet(episodes=episodes, vocab=vocab)
    first = load_episodes(save_episodes(tmp_path / "a.json.gz", ep_set))
    assert first == ep_set
    assert load_episodes(save_episodes(tmp_path / "b.json.gz", copy.deepcopy(first))) == first
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()


def test_split_tokenize_detokenize():
    # VLN-CE (habitat-lab v0.1.5): lower-case, "," and "?" dropped, "'s" split off,
    # other punctuation kept as tokens, hyphenated words kept whole.
    assert split_words("Go up-stairs, past Bob's chair? Stop.") == [
        "go", "up-stairs", "past", "bob", "'", "s", "chair", "stop", ".",
    ]  # fmt: skip
    vocab = build_vocab(["walk past the sofa."])
    # word_list: <pad> <unk> . past sofa the walk
    ids = tokenize("Walk past the red sofa.", vocab)
    assert len(ids) == 200
    assert ids[:6] == [6, 3, 5, 1, 4, 2] and set(ids[6:]) == {0}
    assert tokenize("walk walk walk", vocab, max_len=2) == [6, 6]
    assert tokenize("walk", vocab, max_len=None) == [6]
    assert detokenize(ids, vocab) == "walk past the <unk> sofa ."
    # a vocabulary holding only word_list, as habitat's VocabDict is built from
    assert tokenize("sofa", {"word_list": vocab["word_list"]}, max_len=3) == [4, 0, 0]


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2, -math.pi / 3, 2.5, math.pi])
def test_quaternion_helpers(yaw):
    q = yaw_to_quaternion(yaw)
    assert q == pytest.approx([0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)])
    # heading 0 looks along -z; turning left (positive yaw) from -z faces -x.
    assert rotate_vector(q, [0.0, 0.0, -1.0]) == pytest.approx(
        [-math.sin(yaw), 0.0, -math.cos(yaw)], abs=1e-12
    )
    assert math.cos(quaternion_to_yaw(q) - yaw) == pytest.approx(1.0)


def test_quarter_turn_left_faces_minus_x():
    assert rotate_vector(yaw_to_quaternion(math.pi / 2), [0, 0, -1]) == pytest.approx(
        [-1.0, 0.0, 0.0], abs=1e-12
    )
    assert quaternion_to_yaw([0.0, 0.0, 0.0, 1.0]) == 0.0
    # an R2R-CE-style, not quite unit quaternion still gives a heading
    assert quaternion_to_yaw([0, 0.9996, 0, -0.0274]) == pytest.approx(
        2 * math.atan2(0.9996, -0.0274) - 2 * math.pi
    )


def test_a_data_folder_refuses_other_settings(tmp_path):
    from vlnav import VlnavError
    from vlnav.config import EnvConfig, load_config
    from vlnav.sampler import prepare_data

    small = [
        f"data_dir={tmp_path / 'd'}",
        "scenes.train=1",
        "scenes.val_unseen=1",
        "episodes.train_per_scene=2",
        "episodes.val_seen_per_scene=1",
        "episodes.val_unseen_per_scene=1",
    ]
    cfg = load_config(EnvConfig, None, small)
    prepare_data(cfg, progress=False)
    assert (tmp_path / "d" / "dataset.json").is_file()
    prepare_data(cfg, progress=False)  # the same settings: nothing to do, no error
    other = load_config(EnvConfig, None, [*small, "episodes.train_per_scene=3"])
    with pytest.raises(VlnavError, match="episodes.train_per_scene differ"):
        prepare_data(other, progress=False)
    prepare_data(other, force=True, progress=False)  # regenerating is allowed
    more = load_config(EnvConfig, None, [*small, "episodes.train_per_scene=3", "scenes.train=2"])
    with pytest.raises(VlnavError, match="scenes.train differ"):
        prepare_data(more, progress=False)
