"""The hf speaker with a tiny Llama and a word-level tokenizer, both built and saved here.

Nothing is downloaded: the checkpoint is written to tmp_path and loaded through the same
code path as a real one. Its random weights write gibberish, which validation must reject
with counted reasons.
"""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="the hf speaker needs torch (pip install 'vlnav[llm]')")
transformers = pytest.importorskip("transformers", reason="needs transformers (vlnav[llm])")

from vlnav.instruct.config import HFConfig, InstructConfig  # noqa: E402
from vlnav.instruct.hf import HFSpeaker, plain_chat  # noqa: E402
from vlnav.instruct.pipeline import run_instruct  # noqa: E402
from vlnav.instruct.speakers import SpeakerError, SpeakerRequest, make_speaker  # noqa: E402

SENTENCES = [
    "walk out of the bedroom and stop next to the white fridge",
    "turn left at the red sofa then go into the kitchen",
    "user system assistant rooms along the path in order living room kitchen",
    "landmarks you may mention write the instruction for this path",
]
TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


def save_tiny_checkpoint(folder, chat_template=TEMPLATE):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        SENTENCES, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"])
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.chat_template = chat_template
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_lm"))


def hf_config(**kw):
    cfg = InstructConfig(max_attempts=2, few_shot=1)
    cfg.hf = HFConfig(**{"batch_size": 3, "max_new_tokens": 12, "device": "cpu", **kw})
    return cfg


def test_batched_generation_through_the_chat_template(checkpoint):
    sp = make_speaker(f"hf:{checkpoint}", hf_config())
    assert isinstance(sp, HFSpeaker) and sp.has_template
    prompt = sp.render([{"role": "user", "content": "walk"}])
    assert prompt == "<s> user : walk </s> <s> assistant : "
    reqs = [
        SpeakerRequest("instruction", k, [{"role": "user", "content": "walk out " * (k + 1)}])
        for k in range(5)
    ]
    done = []
    replies = sp.generate(reqs, lambda i, r: done.append(i))
    assert sorted(done) == list(range(5)) and len(replies) == 5
    for r, req in zip(replies, reqs):
        assert isinstance(r.text, str) and 0 <= r.completion_tokens <= 12
        assert r.prompt_tokens == len(sp.render(req.messages).split())
    # greedy decoding: batching does not change a reply
    alone = sp.generate([reqs[3]])[0]
    assert alone.text == replies[3].text


def test_gibberish_is_rejected_with_reasons_counted(checkpoint, tiny_env, tiny_episodes, tmp_path):
    cfg = hf_config()
    cfg.speaker = f"hf:{checkpoint}"
    res = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "out", progress=False)
    s = res.stats
    assert s["items"] == len(tiny_episodes)
    assert s["accepted"] + s["dropped"] == s["items"] and s["dropped"] > 0
    assert s["rejected_replies"] == s["requests"] - s["accepted"]
    assert sum(s["rejected_by_reason"].values()) >= s["rejected_replies"]
    assert s["tokens"]["prompt"] > 0
    rejected = [json.loads(line) for line in res.files["rejected"].read_text().splitlines()]
    assert rejected and all(r["reasons"] for r in rejected)
    # replies are cached: a second run asks the model nothing
    again = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "out", progress=False)
    assert again.stats["cache_hits"] == again.stats["requests"] == s["requests"]


def test_imagine_mode_gibberish_is_rejected_as_malformed(
    checkpoint, tiny_env, tiny_episodes, tmp_path
):
    cfg = hf_config(imagine_max_new_tokens=16)
    cfg.speaker, cfg.mode, cfg.max_attempts, cfg.imagine_examples = (
        f"hf:{checkpoint}",
        "imagine",
        1,
        1,
    )
    res = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "out", limit=2, progress=False)
    assert res.stats["accepted"] == 0
    assert set(res.stats["rejected_by_reason"]) <= {"no_instruction", "no_steps"}


def test_plain_layout_without_a_chat_template(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "plain", chat_template=None)
    sp = make_speaker(f"hf:{folder}", hf_config())
    assert not sp.has_template
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "walk"}]
    assert sp.render(msgs) == plain_chat(msgs) == "System: be brief\n\nUser: walk\n\nAssistant:"


def one_line_error(name):
    with pytest.raises(SpeakerError) as e:
        make_speaker(name, hf_config())
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_and_corrupt_checkpoints_are_one_line_errors(checkpoint, tmp_path):
    assert "checkpoint folder not found" in one_line_error(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in one_line_error(f"hf:{tmp_path / 'empty'}")
    (tmp_path / "file.bin").write_bytes(b"x")
    assert "is a file" in one_line_error(f"hf:{tmp_path / 'file.bin'}")
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{ not json")
    assert "cannot load the checkpoint" in one_line_error(f"hf:{bad_config}")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in checkpoint.iterdir():
        data = f.read_bytes()
        (truncated / f.name).write_bytes(data[:100] if f.suffix == ".safetensors" else data)
    assert "cannot load the checkpoint" in one_line_error(f"hf:{truncated}")
    assert "needs a model" in one_line_error("hf")


def test_uncached_hub_id_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to find
    msg = one_line_error("hf:vlnav-test/no-such-model")
    assert "not in the local Hugging Face cache" in msg or "cannot load" in msg


def test_importing_the_cli_loads_no_torch():
    code = (
        "import sys, vlnav.cli; vlnav.cli.build_parser(); import vlnav.instruct.pipeline;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
