#!/usr/bin/env python3
"""Checks loadtest/k6/*.js against the API they drive, without k6 (no registry here has it): every HTTP call's
method and path exist in openapi/openapi.json, every JSON body field is in the operation's request schema, every
`x.json("a.b")` read of a reply names a field of its 2xx schema, and every WebSocket frame the scripts send has a
type the server knows (src/domain/frame.rs) with `send` bodies checked like POST /api/messages/send.

Usage: scripts/check-k6.py (from anywhere); exits 1 listing every mismatch."""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
spec = json.loads((root / "openapi/openapi.json").read_text())
schemas = spec["components"]["schemas"]
frames_rs = (root / "src/domain/frame.rs").read_text()
known_frames = set(re.findall(r'"(\w+)"', re.search(r"const KNOWN: &\[&str\] = &\[([^\]]*)\]", frames_rs).group(1)))
problems = []


def resolve(schema):
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return resolve(schema["allOf"][0])
    return schema


def properties(schema):
    return resolve(schema).get("properties", {})


def operation(method, path):
    """The OpenAPI operation for a script's path (a `${…}` segment stands for any `{param}`)."""
    concrete = re.sub(r"\$\{[^}]*\}", "1", path.split("?")[0])
    for template, ops in spec["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), concrete):
            return ops.get(method)
    return None


def top_level_keys(obj_src):
    """Keys of a JS object literal's outer level: `{ a: 1, b: { c: 2 }, d }`."""
    keys, depth, token = [], 0, ""
    for ch in obj_src[1:-1]:
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        if depth == 0 and ch == ":" and re.fullmatch(r"\s*\w+\s*", token):
            keys.append(token.strip())
        token = "" if depth == 0 and ch in ",:" else token + ch if depth == 0 else token
    return keys


def balanced(src, start):
    """The balanced `{…}` beginning at src[start]."""
    depth = 0
    for i in range(start, len(src)):
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        if depth == 0:
            return src[start : i + 1]
    return src[start:]


def check_fields(where, keys, schema):
    allowed = properties(schema)
    for k in keys:
        if k not in allowed:
            problems.append(f"{where}: field `{k}` is not in the schema ({', '.join(sorted(allowed))})")


def reply_schema(op):
    for status, r in op.get("responses", {}).items():
        if status.startswith("2"):
            for media in r.get("content", {}).values():
                return media.get("schema")
    return None


for script in sorted((root / "loadtest/k6").glob("*.js")):
    src = script.read_text()
    name = script.relative_to(root)
    replies = []  # (position, variable, operation, reply schema): a read uses the nearest assignment before it
    call = re.compile(r"(?:const (\w+) = )?(?:expectOk\()?http\.(get|post|put|patch|del)\(`\$\{BASE\}([^`]+)`")
    for m in call.finditer(src):
        var, method, path = m.group(1), {"del": "delete"}.get(m.group(2), m.group(2)), m.group(3)
        op = operation(method, path)
        where = f"{name}: {method.upper()} {path}"
        if op is None:
            problems.append(f"{where}: no such operation in openapi/openapi.json")
            continue
        rest = src[m.end() : m.end() + 400]
        body = re.match(r"\s*,\s*JSON\.stringify\(", rest)
        if body:
            schema = op.get("requestBody", {}).get("content", {})
            schema = next(iter(schema.values()), {}).get("schema")
            if schema is None:
                problems.append(f"{where}: sends a body the operation does not take")
            else:
                check_fields(where, top_level_keys(balanced(rest, body.end())), schema)
        if var:
            replies.append((m.start(), var, where, reply_schema(op)))
    for m in re.finditer(r"\b(\w+)\.json\(\"([\w.]+)\"\)", src):
        var, path = m.group(1), m.group(2)
        before = [r for r in replies if r[1] == var and r[0] < m.start()]
        if not before:
            continue
        _, _, where, schema = before[-1]
        for part in path.split("."):
            props = properties(schema or {})
            if part not in props:
                problems.append(f"{where}: reads `{path}`, but the reply has no `{part}` ({', '.join(sorted(props))})")
                break
            schema = props[part]
    for m in re.finditer(r"send\((?:JSON\.stringify\()?['\"]?\{\s*\"?type\"?:\s*\"(\w+)\"", src):
        frame = m.group(1)
        if frame not in known_frames:
            problems.append(f"{name}: sends a `{frame}` frame; the server knows {sorted(known_frames)}")
        if frame == "send":
            inner = src.find("message:", m.end())
            brace = src.find("{", inner)
            check_fields(f"{name}: send frame", top_level_keys(balanced(src, brace)), {"$ref": "#/components/schemas/SendMessage"})

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("loadtest/k6: every call, body field, reply field and frame matches the API")
