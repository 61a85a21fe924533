"""Tell what a checkpoint file is, and whether loading it could run code, without unpickling it.

Only bytes are read here: zip directories, small text members, and pickle opcodes walked with
`pickletools.genops`, which decodes opcodes but never calls what they name.
"""
from __future__ import annotations

import io
import json
import pickletools
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

from benchmark.core.errors import CheckpointError

# What `sniff_format` can answer.
TORCHSCRIPT, EXPORT, PICKLE, SAFETENSORS, ZIP, UNKNOWN = (
    "torchscript", "export", "pickle", "safetensors", "zip", "unknown")

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_SCAN_LIMIT = 64 << 20
# Members that a reader inflates into memory (JSON, pickles) may not declare more than this, and no
# deflated member may expand more than _MAX_RATIO times: torch writes its payloads uncompressed, so
# only a crafted archive (a zip bomb) comes near.
MAX_TEXT_MEMBER = 64 << 20
_MAX_RATIO = 200


def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def check_zip_members(path: Path) -> None:
    """Refuse a zip whose members would inflate far beyond their stored size, before reading any."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: the format's own reader reports it
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > (1 << 20) \
                and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise CheckpointError(
                f"member {info.filename!r} would inflate from {info.compress_size:,} to "
                f"{info.file_size:,} bytes (more than {_MAX_RATIO}x); refusing a likely zip bomb",
                where=str(path))


def _read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    size = zf.getinfo(member).file_size
    if size > MAX_TEXT_MEMBER:
        raise CheckpointError(f"member {member!r} declares {size:,} bytes; at most "
                              f"{MAX_TEXT_MEMBER:,} are read", where=zf.filename)
    return zf.read(member)


def _split_root(names: list[str]) -> tuple[str | None, list[str]]:
    """torch archives keep everything under one folder; return it and the names below it."""
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        return None, names
    root = roots.pop()
    return root, [n.split("/", 1)[1] for n in names]


def _classify_zip(path: Path, names: list[str]) -> str:
    _, rel = _split_root(names)
    rel_set = set(rel)
    if "archive_format" in rel_set or any(n.startswith("models/") and n.endswith(".json") for n in rel):
        return EXPORT
    if any(n.startswith("serialized_") for n in rel):  # torch.export layout before 2.7
        return EXPORT
    # TorchScript archives carry compiled code next to their data; plain torch.save zips do not.
    if "constants.pkl" in rel_set and any(n.startswith("code/") for n in rel):
        return TORCHSCRIPT
    if "data.pkl" in rel_set:
        return PICKLE
    return ZIP


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def sniff_format(path: Path) -> str:
    """One of torchscript, export, pickle, safetensors, zip (another zip), unknown."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(16)
    if head[:4] in _ZIP_MAGICS:
        names = _zip_names(path)
        return UNKNOWN if names is None else _classify_zip(path, names)
    # Protocol 2+ pickles open with PROTO; torch.save never writes protocol 0 or 1.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return PICKLE
    if _looks_like_safetensors(head, path.stat().st_size):
        return SAFETENSORS
    return UNKNOWN


# ---------------------------------------------------------------- pickle opcodes

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _globals_of_one(ops: Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]
                    ) -> tuple[list[str], list[object]]:
    """The globals one pickle imports, and the arguments of its opcodes (to recognise torch's
    legacy magic number)."""
    found: list[str] = []
    args: list[object] = []
    memo: dict[int, object] = {}
    recent: list[object] = []  # values pushed by the last opcodes, enough to resolve STACK_GLOBAL
    for op, arg, _ in ops:
        name = op.name
        if len(args) < 4:
            args.append(arg)
        if name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attr = recent[-2:] if len(recent) >= 2 else (None, None)
            ok = isinstance(module, str) and isinstance(attr, str)
            found.append(f"{module}.{attr}" if ok else "<unresolved global>")
        if name in _STRING_OPS:
            recent.append(arg)
        elif name in _GET_OPS:
            recent.append(memo.get(int(arg)))
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in _PUT_OPS:
            memo[int(arg)] = recent[-1] if recent else None
        elif name != "FRAME":
            recent.append(None)
        del recent[:-2]
    return found, args


# torch.save's legacy (non-zip) layout: five pickles (magic number, protocol, sys info, the object,
# storage keys) and then raw storage bytes. torch.load unpickles all five, of any protocol.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5


def _is_legacy_magic(args: list[object]) -> bool:
    return TORCH_LEGACY_MAGIC in [a for a in args if isinstance(a, int) and not isinstance(a, bool)]


def pickle_globals(data: bytes) -> list[str]:
    """Every `module.name` the pickle(s) in `data` would import; decoding stops at the first error.

    The first pickle is always decoded, whatever its protocol (0 and 1 have no PROTO opcode). When it
    is torch's legacy magic number, the next four are decoded too, again of any protocol, because
    torch.load unpickles each of them; an undecodable one among them is reported as such.
    """
    stream = io.BytesIO(data)
    found: list[str] = []
    try:
        names, args = _globals_of_one(pickletools.genops(stream))
    except (ValueError, EOFError, struct.error):
        return ["<undecodable pickle>"]
    found += names
    if not _is_legacy_magic(args):
        return found
    for _ in range(_LEGACY_PICKLES - 1):
        if stream.tell() >= len(data):
            break
        try:
            found += _globals_of_one(pickletools.genops(stream))[0]
        except (ValueError, EOFError, struct.error):
            found.append("<undecodable pickle>")
            break
    return found


def pickle_globals_of_file(path: Path) -> list[str]:
    """The imports of a raw pickle file or of a torch zip-pickle's data.pkl."""
    names = _zip_names(path)
    if names is None:
        with Path(path).open("rb") as fh:
            return pickle_globals(fh.read(_SCAN_LIMIT))
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in names if n.endswith("data.pkl")]
        return [g for n in pkls for g in pickle_globals(_read_member(zf, n))]


# Names that rebuild plain tensors; anything else in a pickle could construct arbitrary objects.
_TENSOR_GLOBAL = re.compile(
    r"^(torch\._utils\._rebuild_(tensor|tensor_v2|tensor_v3|parameter)"
    r"|torch\.\w*Storage|torch\.(device|Size)"
    r"|torch\.(u?int\d*|float\w*|bfloat16|half|double|long|short|bool|complex\w*)"
    r"|collections\.OrderedDict)$"
)


def is_tensor_global(name: str) -> bool:
    return bool(_TENSOR_GLOBAL.match(name))


# ---------------------------------------------------------------- torch.export archives
# torch.export.load is documented as unsafe for untrusted files: it unpickles weights and constants
# marked use_pickle, retries sample inputs with weights_only=False, loads AOTInductor shared
# libraries, falls back to a pickled legacy layout, and hands shape expressions to sympy's eval.
# A plain archive needs none of that, so anything beyond it is refused unless the user trusts it.

_PT2_MEMBERS = re.compile(
    r"^(archive_format|archive_version|byteorder|version|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|extra/[^/]+"
    r"|data/weights/(weight_\d+|[\w.-]+_weights_config\.json)"
    r"|data/constants/(tensor_\d+|[\w.-]+_constants_config\.json)"
    r"|data/sample_inputs/[\w.-]+\.pt)$"
)
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Max", "Min", "Abs", "Mod", "Eq", "Ne", "Lt", "Le",
    "Gt", "Ge", "And", "Or", "Not", "floor", "ceiling", "sqrt", "oo", "zoo", "nan", "true", "false",
    "True", "False", "positive", "negative", "nonnegative", "nonpositive", "integer", "real",
    "finite", "nonzero", "zero", "even", "odd", "commutative",
})
_EXPR_CHARS = re.compile(r"^[\w\s+\-*/%(),.<>=!&|~^']*$")
_QUOTED = re.compile(r"'([^']*)'")
_TOKEN = re.compile(r"\d[\w.]*|[A-Za-z_]\w*")


def _torch_sympy_names() -> frozenset[str]:
    from torch.utils._sympy import functions

    return frozenset(n for n in dir(functions) if n[:1].isupper())


def _safe_sympy(expr: str, allowed: frozenset[str]) -> bool:
    if len(expr) > 4096 or not _EXPR_CHARS.match(expr) or "__" in expr:
        return False
    if re.search(r"\.\s*[A-Za-z_]", expr):  # attribute access
        return False
    for quoted in _QUOTED.findall(expr):
        if not re.fullmatch(r"[A-Za-z_]\w*", quoted):
            return False
    for token in _TOKEN.findall(_QUOTED.sub("''", expr)):
        if token[0].isdigit():
            continue
        if token not in allowed and not re.fullmatch(r"[a-z]+\d+", token):
            return False
    return True


def _walk_expr_strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr_str" and isinstance(value, str):
                yield value
            else:
                yield from _walk_expr_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_expr_strings(value)


def _check_payload_config(zf: zipfile.ZipFile, member: str) -> str | None:
    entries = json.loads(_read_member(zf, member)).get("config", {})
    for fqn, meta in entries.items():
        if meta.get("use_pickle") or not re.fullmatch(r"(weight|tensor)_\d+", str(meta.get("path_name"))):
            return f"its entry {fqn!r} in {member.rsplit('/', 1)[-1]} is stored as a pickle"
    return None


def _check_sample_inputs(zf: zipfile.ZipFile, member: str) -> str | None:
    data = _read_member(zf, member)
    if data[:4] in _ZIP_MAGICS:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pkls = [n for n in inner.namelist() if n.endswith("data.pkl")]
            names = [g for n in pkls for g in pickle_globals(_read_member(inner, n))]
    else:
        names = pickle_globals(data)
    bad = [n for n in names if not is_tensor_global(n)]
    return f"its sample inputs are a pickle that names {bad[0]}" if bad else None


def _check_models(zf: zipfile.ZipFile, member: str, allowed: frozenset[str]) -> str | None:
    for expr in _walk_expr_strings(json.loads(_read_member(zf, member))):
        if not _safe_sympy(expr, allowed):
            return f"{member.rsplit('/', 1)[-1]} holds a shape expression that is not plain arithmetic"
    return None


def pt2_unsafe_reason(path: Path) -> str | None:
    """Why torch.export.load could run code from this archive, or None for a plain archive."""
    names = _zip_names(path) or []
    root, rel = _split_root(names)
    if root is None:
        return "it is not a single-folder torch.export archive"
    odd = [n for n in rel if not n.endswith("/") and not _PT2_MEMBERS.match(n)]
    if odd:
        return f"it contains {odd[0]!r}, which is not part of a plain torch.export archive"
    allowed = _SYMPY_NAMES | _torch_sympy_names()
    try:
        with zipfile.ZipFile(path) as zf:
            if _read_member(zf, f"{root}/archive_format").strip() != b"pt2":
                return "its archive_format is not 'pt2'"
            for name in rel:
                member = f"{root}/{name}"
                if name.endswith(("_weights_config.json", "_constants_config.json")):
                    reason = _check_payload_config(zf, member)
                elif name.startswith("data/sample_inputs/"):
                    reason = _check_sample_inputs(zf, member)
                elif name.startswith("models/"):
                    reason = _check_models(zf, member, allowed)
                else:
                    reason = None
                if reason:
                    return reason
    except KeyError as exc:
        return f"it lacks {exc.args[0]}"
    except (zipfile.BadZipFile, ValueError, AttributeError) as exc:
        # ValueError covers malformed JSON; AttributeError a config that is not an object.
        raise CheckpointError(f"damaged torch.export archive ({exc})", where=str(path)) from exc
    return None
