#!/usr/bin/env python3
"""Writes docs/config.md, the reference of every YAML key, from the doc comments of the schema
structs in src/ (`/// What it is, its range. Default: value.` over each field).

    python3 scripts/dev/config_reference.py           # rewrite docs/config.md
    python3 scripts/dev/config_reference.py --check   # exit 1 if it is stale or a field is undocumented

A field with `#[serde(default ...)]` must say `Default: ...`; one without is required and says
`Required.`. The test `config_reference_covers_every_key` (tests/integration/config_docs.rs)
checks the result against the keys serde itself accepts, so neither side can drift.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "config.md"

# (heading, root type, what the section is): the files a user writes.
SECTIONS = [
    ("Model preset", "SwinConfig",
     "A file in `models/` (or any YAML with these keys), named by a stage's `model:`. The keys are "
     "timm's `SwinTransformer(...)` arguments, so a preset reads like the Python call that builds "
     "the same network."),
    ("Stage kind `pretrain`", "PretrainConfig",
     "EESMM or SimMIM pretraining of an encoder (`eesmm pretrain --config FILE`, or a stage with "
     "`kind: pretrain`). Writes `encoder.safetensors` and its `.json` sidecar."),
    ("Stage kind `finetune`", "FinetuneConfig",
     "An encoder plus a linear head trained on labelled images (`eesmm finetune --config FILE`). "
     "Writes `classifier.safetensors` and its sidecar."),
    ("Stage kind `eval`", "EvalConfig",
     "Top-1/top-5, per-class accuracy and the confusion matrix of a classifier."),
    ("Stage kinds `linear_probe` and `knn`", "ProbeConfig",
     "A frozen encoder's pooled features (or raw pixels) judged by a linear probe "
     "(`kind: linear_probe`, its `probe:` keys) or a k-NN vote (`kind: knn`, its `knn:` keys)."),
    ("Stage kind `export`", "ExportStage",
     "A model written as ONNX (`eesmm export` with its flags as keys)."),
    ("Stage kind `verify`", "VerifyStage",
     "ONNX Runtime against burn on random inputs and real images; fails above `tol`."),
    ("Stage kind `infer`", "InferStage",
     "The top-k classes of every image with an exported classifier."),
]

PREAMBLE = """# Configuration reference

Every key eesmm reads from YAML: model presets (`models/*.yaml`), stage files
(`eesmm pretrain --config FILE`, `eesmm finetune --config FILE`, ...) and the stages of a pipeline
(`eesmm run FILE`). Unknown keys are an error naming the file, line and key. Paths are relative to
the working directory.

This page is generated from the doc comments of the schema structs in `src/`
(`python3 scripts/dev/config_reference.py`); the test suite fails when a key that the parser
accepts is missing here. "Required" keys have no default.

## Contents

- [Pipeline file](#pipeline-file)
{contents}

## Pipeline file

`eesmm run FILE` reads these top-level keys (and ignores keys starting with `x-`, for YAML
anchors). Every stage's own keys are those of its kind, below. See [pipelines.md](pipelines.md)
for how they combine.

| key | type | default | what it is |
|---|---|---|---|
| `name` | string | required | The pipeline's name, shown in `summary.md`. |
| `run_dir` | path | `runs/<name>` | The folder every stage writes into: a stage's `out_dir` defaults to `<run_dir>/<stage name>`. |
| `vars` | mapping | `{{}}` | Values substituted for `${{vars.NAME}}` anywhere below; `EESMM_<NAME>` in the environment overrides `vars.<name>` (`EESMM_FMNIST` sets `vars.fmnist`). |
| `defaults` | mapping | `{{}}` | Keys given to every stage whose kind takes them (e.g. `model`, `device`, `seed`), unless the stage sets them. |
| `stages` | list of mappings | required | The stages in order; each has `name` (unique), `kind` (one of the kinds below) and that kind's keys. `${{STAGE.OUTPUT}}` refers to an earlier stage's output (e.g. `${{pretrain.encoder}}`). |

`--set KEY=VALUE` on the command line overrides any key: `--set pretrain.train.epochs=2` (a
stage's key), `--set vars.fmnist=/data/fmnist`, `--set run_dir=runs/x`.
"""


def parse_items(text):
    """Every `#[derive(..Deserialize..)]` struct and enum of a source file, by name."""
    items = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#[derive(") and "Deserialize" in line:
            attrs, j = [], i + 1
            while lines[j].strip().startswith("#["):
                attrs.append(lines[j].strip())
                j += 1
            header = lines[j].strip()
            m = re.match(r"pub (struct|enum) (\w+)", header)
            if m:
                kind, name = m.groups()
                serde = " ".join(a for a in attrs if a.startswith("#[serde("))
                if header.endswith(";"):  # tuple struct: pub struct X(pub Y);
                    inner = re.search(r"\(pub (\w+)\)", header).group(1)
                    items[name] = {"kind": "newtype", "inner": inner, "serde": serde}
                    i = j + 1
                    continue
                body, depth, k = [], header.count("{") - header.count("}"), j + 1
                while depth > 0:
                    body.append(lines[k])
                    depth += lines[k].count("{") - lines[k].count("}")
                    k += 1
                parse = parse_fields if kind == "struct" else parse_variants
                items[name] = {"kind": kind, "serde": serde, "body": parse(body[:-1])}
                i = k
                continue
        i += 1
    return items


def parse_fields(body):
    """Fields of a struct body: (name, type, doc, serde attributes)."""
    fields, doc, attrs = [], [], []
    for raw in body:
        line = raw.strip()
        if line.startswith("///"):
            doc.append(line[3:].strip())
        elif line.startswith("#["):
            attrs.append(line)
        elif m := re.match(r"(?:pub )?(\w+): (.+?),?$", line):
            fields.append({"name": m.group(1), "type": m.group(2), "doc": " ".join(doc),
                           "serde": " ".join(attrs)})
            doc, attrs = [], []
    return fields


def parse_variants(body):
    """Variants of an enum body: (name, fields or None for a unit variant, doc)."""
    variants, doc, i = [], [], 0
    while i < len(body):
        line = body[i].strip()
        if line.startswith("///"):
            doc.append(line[3:].strip())
        elif m := re.match(r"(\w+)\s*\{$", line):
            depth, inner, i = 1, [], i + 1
            while depth > 0:
                depth += body[i].count("{") - body[i].count("}")
                inner.append(body[i])
                i += 1
            variants.append({"name": m.group(1), "fields": parse_fields(inner[:-1]),
                             "doc": " ".join(doc)})
            doc = []
            continue
        elif m := re.match(r"(\w+)(\(.*\))?,$", line):
            variants.append({"name": m.group(1), "fields": None, "tuple": m.group(2),
                             "doc": " ".join(doc)})
            doc = []
        i += 1
    return variants


def snake(name, serde):
    if "rename_all = \"snake_case\"" in serde:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    if "rename_all = \"lowercase\"" in serde:
        return name.lower()
    return name


def strip_generic(ty, wrapper):
    m = re.fullmatch(rf"{wrapper}<(.+)>", ty)
    return m.group(1) if m else None


def type_name(ty, items):
    """How a Rust field type reads in YAML."""
    if inner := strip_generic(ty, "Option"):
        return type_name(inner, items)
    if inner := strip_generic(ty, "Vec"):
        return "list of " + type_name(inner, items) + ("s" if inner in PRIMITIVES else "")
    if m := re.fullmatch(r"\[(\w+); (\d+)\]", ty):
        return "[" + ", ".join([type_name(m.group(1), items)] * int(m.group(2))) + "]"
    if ty in PRIMITIVES:
        return PRIMITIVES[ty]
    short = ty.split("::")[-1]
    item = items[short]
    if item["kind"] == "struct":
        return "mapping"
    expecting = re.search(r'expecting = "([^"]+)"', item["serde"])
    if expecting:
        return expecting.group(1)
    if "tag = " in item["serde"]:
        return "mapping"
    return " \\| ".join(f"`{snake(v['name'], item['serde'])}`" for v in item["body"])


PRIMITIVES = {"usize": "integer", "u64": "integer", "u32": "integer", "f32": "number",
              "f64": "number", "bool": "bool", "String": "string", "PathBuf": "path"}


class Undocumented(Exception):
    pass


def split_doc(field, where):
    """(description, default) of a field from its doc comment and serde attributes."""
    doc = field["doc"]
    has_default = "default" in field["serde"]
    if not doc:
        raise Undocumented(f"{where}: no doc comment")
    if m := re.search(r"\s*Default: (.+?)\.?$", doc):
        if not has_default:
            raise Undocumented(f"{where}: says 'Default:' but serde has no default")
        return doc[: m.start()].strip(), m.group(1)
    if has_default:
        raise Undocumented(f"{where}: has a serde default but no 'Default: ...' in its doc comment")
    if not re.search(r"\bRequired\b", doc):
        raise Undocumented(f"{where}: required, but its doc comment does not say 'Required.'")
    m = re.search(r"\s*Required( \([^)]*\))?\.\s*", doc)
    description = (doc[: m.start()] + " " + doc[m.end():]).strip()
    return re.sub(r"\s+", " ", description), "required" + (m.group(1) or "")


def rows(type_name_, prefix, items, note=""):
    """Table rows (key, type, default, description) of a struct and the structs inside it."""
    item = items[type_name_]
    if item["kind"] == "newtype":
        return rows(item["inner"], prefix, items)
    out = []
    for field in item["body"]:
        key = f"{prefix}{field['name']}"
        description, default = split_doc(field, f"{type_name_}.{field['name']}")
        out.append((key, type_name(field["type"], items), default, note + description))
        inner = field["type"]
        inner = strip_generic(inner, "Option") or inner
        nested = items.get(inner.split("::")[-1])
        if nested and nested["kind"] == "struct":
            out += rows(inner.split("::")[-1], key + ".", items)
        elif nested and nested["kind"] == "enum" and "tag = " in nested["serde"]:
            out += tagged_rows(nested, key + ".", items)
    return out


def tagged_rows(enum, prefix, items):
    """Rows of an internally tagged enum: the tag, then each struct variant's fields."""
    tag = re.search(r'tag = "(\w+)"', enum["serde"]).group(1)
    names = [snake(v["name"], enum["serde"]) for v in enum["body"]]
    out = [(prefix + tag, " \\| ".join(f"`{n}`" for n in names), names[0], "; ".join(f"`{n}`: {v['doc'].rstrip('.')}" for n, v in zip(names, enum["body"])) + ".")]
    for name, variant in zip(names, enum["body"]):
        for field in variant["fields"] or []:
            description, default = split_doc(field, f"{name}.{field['name']}")
            out.append((prefix + field["name"], type_name(field["type"], items), default,
                        f"(`{tag}: {name}`) {description}"))
    return out


def render(items):
    anchors = [re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h, _, _ in SECTIONS]
    contents = "\n".join(f"- [{h}](#{a})" for (h, _, _), a in zip(SECTIONS, anchors))
    parts = [PREAMBLE.replace("{contents}", contents).replace("{{", "{").replace("}}", "}")]
    for heading, root, about in SECTIONS:
        parts.append(f"\n## {heading}\n\n{about}\n\n| key | type | default | what it is |\n"
                     "|---|---|---|---|\n")
        for key, ty, default, description in rows(root, "", items):
            if re.fullmatch(r"[-\w.]+|\[[^\]]*\]", default) and default != "required":
                default = f"`{default}`"
            parts.append(f"| `{key}` | {ty} | {default} | {description} |\n")
    return "".join(parts)


def main():
    items = {}
    for path in sorted((ROOT / "src").rglob("*.rs")):
        items.update(parse_items(path.read_text(encoding="utf-8")))
    try:
        text = render(items)
    except Undocumented as error:
        print(f"config_reference: {error}")
        return 1
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print("config_reference: docs/config.md is stale; run python3 scripts/dev/config_reference.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
