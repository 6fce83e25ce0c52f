"""Chat template vs raw completions for word translation on an instruct model (direct, two-step via English).

Held-out CLDR words of the index's split, three demonstrations from the probe half of each pair (the same for
both styles), greedy decoding. Raw completions: the proxy's few-shot format `{S}:"w"→{T}:"` stopped at `"`.
Chat: the demonstrations as earlier turns of "Translate the {S} word "w" into {T}. Reply with the translation
only.", the answer passed through `bridgex_serve.extract.extract_translation` (and scored raw as well, to show
what extraction changes). Writes `result.json` and `report.md` into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridgex_serve.extract import extract_translation  # noqa: E402
from index_builder.evaluation import scoring  # noqa: E402
from index_builder.evaluation.held_out import stable_order  # noqa: E402
from index_builder.indexing.dictionaries import cldr_dictionaries, split_entries  # noqa: E402
from index_builder.indexing.languages import english_name, prompt_name  # noqa: E402

PAIRS = "sw-fr,sw-es,he-es,he-de,ar-fr,ar-de,ja-fr,fr-es"
SHOTS = 3


def oriented(dicts: dict, source: str, target: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(probe, test) (source word, target word) lists of the pair in this direction."""
    key = (source, target) if (source, target) in dicts else (target, source)
    probe, test = split_entries(dicts[key])
    flip = key != (source, target)

    def pairs(entries):
        return [(e.target_word, e.source_word) if flip else (e.source_word, e.target_word) for e in entries]

    return pairs(probe), pairs(test)


class Client:
    def __init__(self, endpoint: str, model: str):
        self.http = httpx.Client(base_url=endpoint.rstrip("/"), timeout=300)
        self.model = model
        self.cache: dict[str, str] = {}

    def _post(self, path: str, body: dict) -> dict:
        r = self.http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    def completion(self, demos, word: str, s: str, t: str) -> str:
        sn, tn = prompt_name(s), prompt_name(t)
        prompt = "".join(f'{sn}:"{a}"→{tn}:"{b}"\n' for a, b in demos) + f'{sn}:"{word}"→{tn}:"'
        body = {"model": self.model, "prompt": prompt, "max_tokens": 16, "temperature": 0}
        body["stop"] = ['"', "\n"]
        return self._post("/completions", body)["choices"][0]["text"].strip()

    def chat(self, demos, word: str, s: str, t: str) -> str:
        sn, tn = english_name(s), english_name(t)

        def ask(w: str) -> dict:
            text = f'Translate the {sn} word "{w}" into {tn}. Reply with the translation only.'
            return {"role": "user", "content": text}

        messages = [m for a, b in demos for m in (ask(a), {"role": "assistant", "content": b})] + [ask(word)]
        body = {"model": self.model, "messages": messages, "max_tokens": 32, "temperature": 0}
        return self._post("/chat/completions", body)["choices"][0]["message"]["content"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--index", type=Path, help="unused except for the record (the split is CLDR's own)")
    parser.add_argument("--pairs", default=PAIRS)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    pairs = [tuple(p.split("-")) for p in args.pairs.split(",")]
    langs = sorted({x for p in pairs for x in p} | {"en"})
    dicts = cldr_dictionaries(langs)
    client = Client(args.endpoint, args.model)
    rows = []
    for s, t in pairs:
        _probe, test = oriented(dicts, s, t)
        golds = scoring.gold_sets(test)
        words = stable_order(s, t, sorted(golds))[: args.limit]
        demos = {(a, b): oriented(dicts, a, b)[0][:SHOTS] for a, b in [(s, t), (s, "en"), ("en", t)]}

        def one(word: str, s=s, t=t, demos=demos) -> dict:
            out = {"word": word}
            out["completion"] = client.completion(demos[(s, t)], word, s, t)
            raw = client.chat(demos[(s, t)], word, s, t)
            out["chat_raw"], out["chat"] = raw, extract_translation(raw, (english_name(t), prompt_name(t)))
            en = client.completion(demos[(s, "en")], word, s, "en")
            out["completion_en"] = client.completion(demos[("en", t)], en, "en", t) if en else ""
            en_chat = extract_translation(client.chat(demos[(s, "en")], word, s, "en"), ("English",))
            raw2 = client.chat(demos[("en", t)], en_chat, "en", t) if en_chat else ""
            out["chat_en"] = extract_translation(raw2, (english_name(t), prompt_name(t)))
            return out

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, words))
        for a in answers:
            a["hits"] = {k: scoring.is_hit(a[k], golds[a["word"]]) for k in
                         ("completion", "chat_raw", "chat", "completion_en", "chat_en")}  # fmt: skip
        rows.append({"pair": f"{s}-{t}", "answers": answers})
        print(s, t, {k: sum(a["hits"][k] for a in answers) for k in answers[0]["hits"]}, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    lines = _report(rows)
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _report(rows: list[dict]) -> list[str]:
    """The Markdown table: P@1 per pair and prompt style, chat minus completion with its interval."""
    keys = ("completion", "chat", "chat_raw", "completion_en", "chat_en")
    lines = ["| pair | n | " + " | ".join(keys) + " | chat − completion (95% CI) |", "|---" * 8 + "|"]
    total = {k: [] for k in keys}
    for row in rows:
        hits = {k: [a["hits"][k] for a in row["answers"]] for k in keys}
        for k in keys:
            total[k] += hits[k]
        d, lo, hi = scoring.paired_bootstrap(hits["chat"], hits["completion"])
        cells = " | ".join(f"{scoring.accuracy(sum(hits[k]), len(hits[k])):.1f}" for k in keys)
        lines.append(f"| {row['pair']} | {len(hits['chat'])} | {cells} | {d:+.1f} [{lo:+.1f}, {hi:+.1f}] |")
    d, lo, hi = scoring.paired_bootstrap(total["chat"], total["completion"])
    d2, lo2, hi2 = scoring.paired_bootstrap(total["chat_en"], total["completion_en"])
    cells = " | ".join(f"{scoring.accuracy(sum(total[k]), len(total[k])):.1f}" for k in keys)
    lines.append(f"| all | {len(total['chat'])} | {cells} | {d:+.1f} [{lo:+.1f}, {hi:+.1f}] |")
    lines.append(f"\nVia English, chat − completion: {d2:+.1f} [{lo2:+.1f}, {hi2:+.1f}] points.")
    preamble = sum(a["chat_raw"].strip() != a["chat"] for r in rows for a in r["answers"])
    lines.append(f"Chat answers changed by extract_translation: {preamble} of {len(total['chat'])}.")
    return lines


if __name__ == "__main__":
    sys.exit(main())
