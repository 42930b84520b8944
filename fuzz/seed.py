#!/usr/bin/env python3
"""Seeds the fuzz corpora at run time (stdlib only).

Writes fuzz/corpus/<target>/ and fuzz/corpus/dict/config.dict, both gitignored:
the seeds derive from the third-party fixtures in ../shared/fixtures (or
RELAY_FIXTURES_DIR), which are never copied into the repository, and from the
project's own examples/, config/ and examples/demo/.

Without the fixtures the corpora are seeded from the project's own files only;
with CI=true that is an error (as for the tests that read fixtures).

Usage: python3 fuzz/seed.py [--out DIR]
"""

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent

# Flags byte of the ingress input (see fuzz_targets/ingress.rs).
TOKEN, HMAC, BASIC, BEARER = 0, 1, 2, 3
FUZZED_CRED = 4
CT_JSON, CT_CHARSET, CT_PLUS, CT_TEXT = 0, 8, 16, 24
SMALL = 32
UNKNOWN = 64
DECLARE_LENGTH = 128
# libFuzzer's -max_len in infra/scripts/fuzz.sh: longer seeds would be cut.
MAX_LEN = 4096


def fixtures_dir():
    env = os.environ.get("RELAY_FIXTURES_DIR")
    return Path(env) if env else REPO.parent / "shared" / "fixtures"


class Corpus:
    def __init__(self, root):
        self.root = root
        self.counts = {}

    def add(self, target, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        d = self.root / target
        d.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        path = d / name
        if not path.exists():
            path.write_bytes(data)
            self.counts[target] = self.counts.get(target, 0) + 1


def load_json(path):
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def shrink(v, depth=0):
    """A smaller copy of a JSON value of the same shape: strings clipped, lists
    and objects cut short, so seeds fit libFuzzer's -max_len."""
    if isinstance(v, str):
        return v[:80]
    if isinstance(v, list):
        return [shrink(x, depth + 1) for x in v[:2]]
    if isinstance(v, dict):
        keep = 16 if depth < 2 else 6
        return {k: shrink(x, depth + 1) for k, x in list(v.items())[:keep]}
    return v


def fit(v, limit=MAX_LEN - 300):
    """The value itself if its compact form is small enough, else shrunk."""
    return v if len(compact(v).encode()) <= limit else shrink(v)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def ingress_input(flags, body, webhook_id=b"", retry=b"", cred=b""):
    block = webhook_id + b"\n" + retry + b"\n" + cred
    block = block[:255]
    return bytes([flags, len(block)]) + block + body


def leaves(v, prefix=""):
    """(path, scalar) pairs of a JSON value, in the relay's path syntax."""
    if isinstance(v, dict):
        for k, x in v.items():
            if re.fullmatch(r"[A-Za-z0-9_:$-]+", k):
                p = f"{prefix}.{k}" if prefix else k
            else:
                p = f'{prefix}["{k}"]'
            yield from leaves(x, p)
    elif isinstance(v, list):
        for i, x in enumerate(v[:3]):
            yield from leaves(x, f"{prefix}[{i}]")
    elif prefix:
        yield prefix, v


def strings(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    elif isinstance(v, str):
        yield v


def scalar_text(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else json.dumps(v)


def seed_payloads(c, name, payload, raw, kind):
    """Ingress and envelope seeds from one webhook payload."""
    payload = fit(payload)
    body = compact(payload).encode("utf-8")
    endpoint = "snow" if kind == "servicenow" else "jira"
    method = BASIC if kind == "servicenow" else TOKEN
    wid = hashlib.sha1(name.encode()).hexdigest()[:12].encode()
    c.add("ingress", ingress_input(method | CT_JSON, body, wid, b"0"))
    c.add("ingress", ingress_input(method | CT_CHARSET | DECLARE_LENGTH, body, b"", b"3"))
    if kind == "jira":
        if len(raw) < MAX_LEN - 300:
            c.add("ingress", ingress_input(HMAC | CT_PLUS, raw, wid))
        else:
            c.add("ingress", ingress_input(HMAC | CT_PLUS, json.dumps(payload, indent=1).encode(), wid))
        c.add("ingress", ingress_input(BEARER | CT_JSON, body))
    c.add("ingress", ingress_input(method | SMALL, body[:900] if len(body) > 900 else body))
    envelope = {
        "v": 1,
        "endpoint": endpoint,
        "source": kind,
        "origin": "webhook",
        "event": str(payload.get("webhookEvent") or payload.get("event") or "unknown"),
        "delivery_id": wid.decode(),
        "retry": 0,
        "received_at": "2025-11-24T16:00:00Z",
        "payload": payload,
    }
    c.add("ingress", compact(envelope))


def seed_whitelists_from(c, payload, limit=40):
    pairs = [(p, scalar_text(v)) for p, v in leaves(payload)]
    pairs = [(p, v) for p, v in pairs if len(v) < 60][:limit]
    for i, (p, v) in enumerate(pairs):
        q = f'"{v}"' if any(ch in v for ch in ',|()"') or v != v.strip() or not v else v
        op = ["=", "!=", " IN "][i % 3]
        if op == " IN ":
            c.add("whitelist", f"{p} IN ({q},other)")
        else:
            c.add("whitelist", f"{p}{op}{q}")
        if i < 2:
            c.add("whitelist", f"{p}!={q},!=x\0" + compact(fit(payload)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=FUZZ / "corpus")
    args = ap.parse_args()
    c = Corpus(args.out)

    fixtures = fixtures_dir()
    if not fixtures.is_dir():
        msg = f"fixtures not found at {fixtures} (set RELAY_FIXTURES_DIR)"
        if os.environ.get("CI") == "true":
            sys.exit(f"seed.py: {msg}")
        print(f"*** seed.py: {msg}; seeding from the project's own files only ***", file=sys.stderr)
        fixtures = None

    # --- the project's own files --------------------------------------------
    configs = sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "config").glob("*.yaml"))
    for path in configs:
        text = path.read_text(encoding="utf-8")
        c.add("config", text)
        for m in re.finditer(r'^\s*whitelist:\s*"(.*)"\s*$', text, re.M):
            c.add("whitelist", m.group(1))
    for path in sorted((REPO / "examples" / "demo").glob("*.json")):
        payload = load_json(path)
        if isinstance(payload, dict):
            seed_payloads(c, path.name, payload, path.read_bytes(), "jira")
            seed_whitelists_from(c, payload, 10)
    for text in [
        "user.accountId!=ID1,!=ID2",
        'actor.id IN (a,"b,c",d)',
        "issue.fields.issuetype.name IN Bug|Task",
        'changelog.items[field=status].toString="In Progress"',
        'issue["key with space"]=x',
        "event=jira:issue_created",
    ]:
        c.add("whitelist", text)
    for text in ["First line\nsecond\n\nNew paragraph", "a\r\n\r\nb\n\n\nc  \n", ""]:
        c.add("adf", text)
    # Ingress edge cases: not JSON, not an object, wrong type, bad signature,
    # unknown endpoint, over the small limit.
    c.add("ingress", ingress_input(TOKEN, b"[1,2]"))
    c.add("ingress", ingress_input(TOKEN, b"  \n"))
    c.add("ingress", ingress_input(TOKEN | CT_TEXT, b"{}"))
    c.add("ingress", ingress_input(HMAC | FUZZED_CRED, b"{}", cred=b"sha256=" + b"0" * 64))
    c.add("ingress", ingress_input(TOKEN | UNKNOWN, b"{}", cred=b"nope"))
    c.add("ingress", ingress_input(TOKEN | SMALL | DECLARE_LENGTH, b'{"a":"' + b"x" * 1100 + b'"}'))

    # --- the fixtures -------------------------------------------------------
    if fixtures is not None:
        for path in sorted((fixtures / "jira-webhooks").glob("*.json")):
            payload = load_json(path)
            if not isinstance(payload, dict):
                continue
            seed_payloads(c, path.name, payload, path.read_bytes(), "jira")
            seed_whitelists_from(c, payload)
            for s in strings(payload):
                if "\n" in s and len(s) < 4000:
                    c.add("adf", s)
                    if s.lstrip().startswith("{"):
                        c.add("adf", s)
            for key in ("description", "body"):
                for v in (payload.get("issue", {}).get("fields", {}).get(key), payload.get("comment", {}).get(key)):
                    if isinstance(v, dict):
                        c.add("adf", compact(fit(v)))
        for path in sorted((fixtures / "servicenow").glob("*.json")):
            doc = load_json(path)
            result = doc.get("result") if isinstance(doc, dict) else None
            records = result if isinstance(result, list) else [result] if isinstance(result, dict) else []
            for i, rec in enumerate(records[:3]):
                payload = {"event": "incident.updated", **rec}
                seed_payloads(c, f"{path.name}#{i}", payload, compact(payload).encode(), "servicenow")
                seed_whitelists_from(c, payload, 10)
        for path in sorted((fixtures / "adf").glob("*.json")):
            doc = load_json(path)
            if doc is not None:
                c.add("adf", compact(fit(doc)))
                text = "\n\n".join(s for s in strings(doc) if len(s) < 200)
                c.add("adf", text)

    # --- a dictionary for the config target, from the config schema ----------
    schema = load_json(REPO / "schema" / "relay-config.schema.json")
    words = set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "properties" and isinstance(x, dict):
                    words.update(f"{name}:" for name in x)
                if k == "enum" and isinstance(x, list):
                    words.update(str(e) for e in x if isinstance(e, (str, int)))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(schema)
    words.update(["${RELAY_FUZZ_A}", "${RELAY_FUZZ_B}", "$${", "- ", "&a", "*a", "<<: ", "{{ ", " }}", "|", ">-", "---"])
    d = args.out / "dict"
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for w in sorted(words):
        esc = w.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'"{esc}"')
    (d / "config.dict").write_text("\n".join(lines) + "\n", encoding="utf-8")

    total = sum(c.counts.values())
    per = ", ".join(f"{t} {n}" for t, n in sorted(c.counts.items()))
    print(f"seed.py: {total} new seeds in {args.out} ({per or 'none new'}); "
          f"config.dict {len(lines)} words; fixtures: {fixtures or 'not used'}")


if __name__ == "__main__":
    main()
