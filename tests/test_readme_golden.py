"""Golden numbers: the README's pinned output blocks (the default ``moesim simulate`` and ``moesim validate``)
must be what the code prints now, to the printed digits. Regenerate them with ``make readme``."""

from __future__ import annotations

import pytest

from tests.readme_golden import PINNED, README, elide_stages, headline, pinned_blocks, run_command


@pytest.fixture(scope="module")
def blocks():
    return {b.command: b for b in pinned_blocks(README.read_text())}


def test_the_readme_pins_both_blocks(blocks):
    assert set(blocks) == set(PINNED)
    simulate = headline("moesim simulate", blocks["moesim simulate"].body)
    assert {"step time", "MFU vs BF16 peak (causal | non-causal)", "GPU-hours per trillion tokens"} <= set(simulate)
    validate = headline("moesim validate", blocks["moesim validate"].body)
    assert "summary" in validate and "deepseek-v3" in validate and len(validate) >= 3


@pytest.mark.parametrize("command", PINNED)
def test_readme_block_matches_a_fresh_run(blocks, command):
    block = blocks[command]
    fresh = headline(command, run_command(block.command_line))
    assert fresh == headline(command, block.body), (
        f"README.md's `$ {block.command_line}` block is stale; regenerate it with `make readme`")


def test_parsing_reads_what_it_should():
    out = ("step time                          14.744 s\nMFU vs BF16 peak (causal | non-causal)   54.9% | 61.5%\n"
           "simulated in   0.43 s (150,368 events)\n")
    assert headline("moesim simulate", out) == {"step time": "14.744 s",
                                                 "MFU vs BF16 peak (causal | non-causal)": "54.9% | 61.5%"}
    table = ("┃ run ┃ stack ┃ GPUs ┃ metric ┃ published ┃ moesim ┃ error ┃\n"
             "│ deepseek-v3 │ HAI-LLM │ 2,048 │ GPU-hours / │ 180,000 │ 133,323 │ -25.9% │\n"
             "│             │         │       │ tokens      │         │         │        │\n"
             "│ llama-…     │ Meta    │ 8,192 │ TFLOPS      │   430.0 │   547.4 │ +27.3% │\n"
             "│ llama-…     │ Meta    │ 8,192 │ TFLOPS      │   400.0 │   493.7 │ +23.4% │\n"
             "average |error| 26.3%, worst 27.7% (llama)\n")
    assert headline("moesim validate", table) == {"deepseek-v3": "180,000 | 133,323 | -25.9%",
                                                  "llama-…": "430.0 | 547.4 | +27.3%",
                                                  "llama-… #3": "400.0 | 493.7 | +23.4%",
                                                  "summary": "average |error| 26.3%, worst 27.7% (llama)"}
    plain = ("run                stack        GPUs metric             published  moesim  error\n"
             "────────────────────────────────────────────────────────────────────────────────\n"
             "deepseek-v3        HAI-LLM     2,048 GPU-hours / 10¹²     180,000 163,100  -9.4%\n"
             "                                     tokens                                     \n"
             "llama3-405b-8k-gpu Meta        8,192 TFLOPS / GPU           430.0   547.1 +27.2%\n"
             "s                                    (causal)                                   \n"
             "average |error| 28.0%, worst 78.0% (llama3.1-8b-torchtitan-8gpus); 13 of 17 off\n")
    assert headline("moesim validate", plain) == {
        "deepseek-v3": "180,000 | 163,100 | -9.4%", "llama3-405b-8k-gpu": "430.0 | 547.1 | +27.2%",
        "summary": "average |error| 28.0%, worst 78.0% (llama3.1-8b-torchtitan-8gpus); 13 of 17 off"}
    stages = "┡━━━╇━━┩\n" + "".join(f"│ {i:>3} │ {i}.0 │\n" for i in range(10, 16)) + "└───┴──┘\n"
    short = elide_stages(stages).splitlines()
    assert short[1:3] == ["│  10 │ 10.0 │", "│  11 │ 11.0 │"] and short[3] == "│ ... │      │"
    assert short[4] == "│  15 │ 15.0 │" and len(short) == 6
