#!/usr/bin/env python3
"""Check that the docs cite only code names and repository files that exist.

Reads README.md, docs/*.md, config/README.md and systemd/README.md: their inline code spans
(`...`), the ```rust blocks (API sketches), and the repository paths in other fenced blocks. It
checks them against the workspace as it is now (every .rs file outside target/, comments and
strings stripped); it keeps no list of today's names.

* Rust names. Checked: a path with `::` (`Replica::poll`, `regent_storage::cluster_name_problem`),
  a CamelCase or SCREAMING_CASE name (`RaftNode`, `SESSIONS_MAX`), a snake_case name with an
  underscore (`compact_log`), any name written as a call or macro (`tick(now)`, `select!`). A
  trailing `(args)`, `{ fields }`, `<T>` or `::{A, B}` is understood, and the fields and group
  members are checked too; `Type.field` is read as `Type::field`. The last segment must be known:
    - defined in the workspace (fn, struct, enum, variant, field, trait, type, const, static,
      mod, macro_rules!, `use ... as`), or a crate or module name;
    - or used by the code as an outside item (`libc::clock_gettime`, `.block_on(`, `select!`,
      a CamelCase type such as `Arc`);
    - or exactly a string literal of the code (API error codes, JSON fields, metrics, environment
      variables, `name={}` output fields);
    - or a key of config/regent.yaml; or listed in .ci/docs-allow.txt (names that are not this
      code's: other projects', the kernel's, HTTP's).
  And its qualifier must fit: for `A::b` with `A` a type of the workspace, `b` must be a variant,
  field, method or associated item of `A` (of the traits `A` implements included); with `A` a
  module or crate (`regent_raft`, `raft`, `crate::config`), `b` must be defined or re-exported
  (`pub use`) in a file of that module; otherwise (an outside type) some file must mention both.
  A path the code itself spells (`net::UdpSocket`) is accepted as it is.
* Configuration paths: a dotted lowercase name whose first part is a top-level key of
  config/regent.yaml (`timing.election_timeout_min_ms`) must be a key path of that file. Other
  dotted names (`net.core.rmem_max`, `time.monotonic_ns()`) are not checked.
* Repository paths: a span with a `/` whose first part is a top-level entry of the repository
  (`crates/raft/src/`, `tests/chaos.rs`, `examples/host.py`), or a file name with a source
  extension (`redb.rs`, `node/term.rs`), must exist at the root or under a directory the same
  doc cites (a chapter on `crates/raft/src/` names its files relatively). `file.rs::name`
  (a test) must be defined in that file.

Not checked: plain words (`tick`, `journal`), CLI commands and flags, HTTP paths, JSON bodies,
shell, absolute paths. Prints each unknown name with file:line and exits 1 if there is any (or
if an entry of the allow-list is no longer cited); otherwise prints one summary line.
"""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/*.md", "config/README.md", "systemd/README.md"]
ALLOW_FILE = ROOT / ".ci" / "docs-allow.txt"
YAML_FILE = ROOT / "config" / "regent.yaml"
SKIP_DIRS = {"target", ".git", "node_modules"}
# File extensions that make a bare name a repository file citation.
FILE_EXTS = {"rs", "py", "sh", "yaml", "toml", "service", "md"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------------------------
# Rust: strip comments and strings, then find the definitions.

CHAR_LIT = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")
STR_LIT = re.compile(r'"((?:\\.|[^"\\])*)"', re.S)
RAW_PREFIX = re.compile(r"(?<![A-Za-z0-9_])(b?r)(#*)$")
BYTE_PREFIX = re.compile(r"(?<![A-Za-z0-9_])b$")
INTERESTING = re.compile(r'//|/\*|"|\'')
BLOCK_COMMENT = re.compile(r"/\*|\*/")


def strip_rust(text):
    """Returns (code without comments and string contents, list of string literal contents)."""
    out = []
    lits = []
    i = 0
    n = len(text)
    while i < n:
        m = INTERESTING.search(text, i)
        if not m:
            out.append(text[i:])
            break
        j = m.start()
        tok = m.group()
        if tok == "//":
            out.append(text[i:j])
            k = text.find("\n", j)
            i = n if k < 0 else k
        elif tok == "/*":
            out.append(text[i:j])
            depth = 0
            end = n
            for c in BLOCK_COMMENT.finditer(text, j):
                depth += 1 if c.group() == "/*" else -1
                if depth == 0:
                    end = c.end()
                    break
            out.append(" " + "\n" * text.count("\n", j, end))
            i = end
        elif tok == '"':
            before = text[max(0, j - 40) : j]
            raw = RAW_PREFIX.search(before)
            if raw:
                out.append(text[i : j - len(raw.group(0))])
                close = '"' + raw.group(2)
                k = text.find(close, j + 1)
                k = n if k < 0 else k
                content = text[j + 1 : k]
                i = min(n, k + len(close))
            else:
                if BYTE_PREFIX.search(before):
                    out.append(text[i : j - 1])
                else:
                    out.append(text[i:j])
                sm = STR_LIT.match(text, j)
                if not sm:
                    out.append(text[j:])
                    break
                content = sm.group(1)
                i = sm.end()
            lits.append(content)
            out.append('""' + "\n" * content.count("\n"))
        else:  # a quote: a char literal or a lifetime
            out.append(text[i:j])
            cm = CHAR_LIT.match(text, j)
            if cm:
                out.append("' '")
                i = cm.end()
            else:
                out.append("'")
                i = j + 1
    return "".join(out), lits


TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d[A-Za-z0-9_]*|::|->|=>|!=|[{}()\[\];,:<>#!&=.']")
ITEM_KEYWORDS = {"struct", "enum", "union", "trait"}


class Workspace:
    def __init__(self, root=None):
        """The definitions of every .rs file under root; with no root, an empty set that
        scan_code fills from a Rust snippet of the docs."""
        self.root = root
        self.defs = {}  # name -> set of kinds
        self.members = {}  # container (type, trait, variant, Enum::Variant) -> set of names
        self.impls = {}  # type -> set of traits it implements
        self.types = set()  # struct/enum/union/trait/type-alias names
        self.modules = set()  # module and crate names (crate `regent-x` as `regent_x` and `x`)
        self.file_modules = {}  # file -> list of module path segments (crate first)
        self.file_words = {}  # file -> set of identifiers in its code
        self.file_uses = {}  # file -> set of identifiers in its `use` declarations
        self.file_defs = {}  # file -> set of names it defines
        self.used_qualified = set()  # names used as `x::name`, `.name(` or `name!`
        self.code_words = set()  # every identifier in the code
        self.code_paths = set()  # every `a::b` pair in the code
        self.literals = set()  # string literals that are names (API, JSON, metrics, env)
        self.toplevel = set()  # names defined outside any impl, trait or type
        if root is None:
            return
        self.crate_roots = self._crates()
        for path in self._rust_files():
            self._scan(path)

    def _crates(self):
        """Every package's directory -> its crate name (`regent-raft` -> `regent_raft`)."""
        roots = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
            if "Cargo.toml" in filenames:
                text = (Path(dirpath) / "Cargo.toml").read_text(errors="replace")
                m = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.M | re.S)
                if m:
                    roots[Path(dirpath)] = m.group(1).replace("-", "_")
        return roots

    def _rust_files(self):
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith(".rs"):
                    yield Path(dirpath) / f

    def _module_path(self, path):
        dirs = [d for d in self.crate_roots if d in path.parents]
        if not dirs:
            return [path.stem]
        crate_dir = max(dirs, key=lambda d: len(d.parts))
        crate = self.crate_roots[crate_dir]
        rel = path.relative_to(crate_dir).with_suffix("").parts
        if rel and rel[0] == "src":
            rel = rel[1:]
        segs = [crate] + [p for p in rel if p not in ("lib", "main", "mod")]
        return segs

    def _add_def(self, name, kind, rel, container=None):
        self.defs.setdefault(name, set()).add(kind)
        self.file_defs[rel].add(name)
        if container:
            self.members.setdefault(container, set()).add(name)
        else:
            self.toplevel.add(name)

    def _scan(self, path):
        rel = str(path.relative_to(self.root))
        code, lits = strip_rust(path.read_text(errors="replace"))
        self.scan_code(code, lits, rel, self._module_path(path))

    def scan_code(self, code, lits, rel, segs):
        for lit in lits:
            if re.fullmatch(IDENT, lit):
                self.literals.add(lit)
            else:
                # a metric with labels (`regent_peer_up{peer="..."}`), an output field
                # (`learner_share={}`)
                m = re.match(r"(%s)\{" % IDENT, lit)
                if m:
                    self.literals.add(m.group(1))
                self.literals.update(re.findall(r"(?<![A-Za-z0-9_])(%s)=\{" % IDENT, lit))
        self.file_modules[rel] = segs
        for s in segs:
            self.modules.add(s)
            if s.startswith("regent_"):
                self.modules.add(s[len("regent_") :])
        self.file_defs[rel] = set()
        toks = TOKEN.findall(code)
        words = {t for t in toks if t[0].isalpha() or t[0] == "_"}
        self.file_words[rel] = words
        self.code_words |= words
        uses = set()
        n = len(toks)
        for k in range(n - 2):
            a, b, c = toks[k], toks[k + 1], toks[k + 2]
            if b == "::" and c[0].isalpha() or b == "::" and c[0] == "_":
                self.used_qualified.add(c)
                if a[0].isalpha() or a[0] == "_":
                    self.code_paths.add((a, c))
            if a == "." and (b[0].isalpha() or b[0] == "_") and c == "(":
                self.used_qualified.add(b)
            if (a[0].isalpha() or a[0] == "_") and b == "!":
                self.used_qualified.add(a)

        # frames: [kind, name, paren depth, at item start]
        stack = [["file", None, 0, False]]
        pending = None
        k = 0
        while k < n:
            t = toks[k]
            nxt = toks[k + 1] if k + 1 < n else ""
            top = stack[-1]
            if t == "{":
                if pending and top[2] == 0:
                    stack.append([pending[0], pending[1], 0, pending[0] in ("struct", "enum", "variant")])
                else:
                    stack.append(["block", None, 0, False])
                pending = None
            elif t == "}":
                if len(stack) > 1:
                    stack.pop()
            elif t in ("(", "["):
                top[2] += 1
            elif t in (")", "]"):
                top[2] = max(0, top[2] - 1)
            elif t == ";":
                if top[2] == 0:
                    pending = None
            elif t == "," and top[2] == 0 and top[0] in ("struct", "enum", "variant"):
                top[3] = True
                k += 1
                continue
            elif top[0] in ("struct", "enum", "variant") and top[3] and top[2] == 0:
                if t in ("#", "pub"):
                    k += 1
                    continue
                if top[0] == "enum" and re.fullmatch(IDENT, t):
                    self._add_def(t, "variant", rel, top[1])
                    pending = ("variant", t)
                    top[3] = False
                    k += 1
                    continue
                # `name: Type`, or `name,` in the docs' API sketches (`Down { peer, reason }`)
                if re.fullmatch(IDENT, t) and (nxt == ":" or nxt in (",", "}") and self.root is None):
                    self._add_def(t, "field", rel, top[1])
                    if top[0] == "variant" and len(stack) > 1 and stack[-2][0] == "enum":
                        self.members.setdefault("%s::%s" % (stack[-2][1], top[1]), set()).add(t)
                top[3] = False
            # keywords (also inside struct/enum bodies for nested items, harmless)
            if t == "fn" and re.fullmatch(IDENT, nxt):
                container = top[1] if top[0] in ("impl", "trait") else None
                self._add_def(nxt, "fn", rel, container)
                pending = ("fn", nxt)
                k += 2
                continue
            if t in ITEM_KEYWORDS and re.fullmatch(IDENT, nxt) and not (pending and pending[0] == "fn"):
                if t == "union" and (k + 2 >= n or toks[k + 2] not in ("{", "<")):
                    k += 1
                    continue
                self._add_def(nxt, t, rel)
                self.types.add(nxt)
                pending = (t, nxt)
                k += 2
                continue
            if t == "impl" and not (pending and pending[0] == "fn") and top[2] == 0:
                k, ty, trait = self._impl_header(toks, k + 1)
                if ty:
                    self.impls.setdefault(ty, set())
                    if trait:
                        self.impls[ty].add(trait)
                pending = ("impl", ty)
                continue
            if t == "mod" and re.fullmatch(IDENT, nxt):
                self._add_def(nxt, "mod", rel)
                self.modules.add(nxt)
                pending = ("mod", nxt)
                k += 2
                continue
            if t in ("const", "static", "type") and re.fullmatch(IDENT, nxt):
                name = nxt
                step = 2
                if nxt == "mut" and k + 2 < n:
                    name = toks[k + 2]
                    step = 3
                if name not in ("fn", "_", "unsafe", "async", "extern") and re.fullmatch(IDENT, name):
                    container = top[1] if top[0] in ("impl", "trait") else None
                    self._add_def(name, t, rel, container)
                    if t == "type":
                        self.types.add(name)
                    k += step
                    continue
            if t == "macro_rules" and nxt == "!" and k + 2 < n:
                self._add_def(toks[k + 2], "macro", rel)
                k += 3
                continue
            if t == "use" and top[2] == 0:
                j = k + 1
                while j < n and toks[j] != ";":
                    if toks[j] == "as" and j + 1 < n and re.fullmatch(IDENT, toks[j + 1]):
                        if toks[j + 1] != "_":
                            self._add_def(toks[j + 1], "use-as", rel)
                    if re.fullmatch(IDENT, toks[j]):
                        uses.add(toks[j])
                    j += 1
                k = j
                continue
            k += 1
        self.file_uses[rel] = uses

    @staticmethod
    def _impl_header(toks, k):
        """Parses `impl<..> Trait<..> for Type<..> where .. {`; returns (index of `{`, type, trait)."""
        n = len(toks)
        if k < n and toks[k] == "<":
            depth = 0
            while k < n:
                if toks[k] == "<":
                    depth += 1
                elif toks[k] == ">":
                    depth -= 1
                    if depth == 0:
                        k += 1
                        break
                k += 1
        parts = [[]]
        depth = 0
        while k < n and toks[k] not in ("{", ";"):
            t = toks[k]
            if t == "<":
                depth += 1
            elif t == ">":
                depth -= 1
            elif t == "where" and depth == 0:
                while k < n and toks[k] not in ("{", ";"):
                    k += 1
                break
            elif t == "for" and depth == 0:
                parts.append([])
            elif depth == 0 and re.fullmatch(IDENT, t) and t not in ("dyn", "mut", "unsafe"):
                parts[-1].append(t)
            k += 1
        last = lambda p: p[-1] if p else None  # noqa: E731
        if len(parts) >= 2:
            return k, last(parts[-1]), last(parts[0])
        return k, last(parts[0]), None

    # -- queries ------------------------------------------------------------------------------

    def member_of(self, container, name, seen=None):
        if name in self.members.get(container, ()):
            return True
        seen = seen or set()
        seen.add(container)
        for trait in self.impls.get(container, ()):
            if trait not in seen and self.member_of(trait, name, seen):
                return True
        return False

    def is_container(self, name):
        return name in self.types or name in self.members

    def files_of_module(self, segs, anchored=False):
        """Files whose module path holds segs in order (a crate `regent_x` also answers to `x`);
        anchored (`crate::a::b`): segs are the modules right under a crate's root."""
        found = []
        for rel, path in self.file_modules.items():
            if anchored:
                if list(path[1 : 1 + len(segs)]) == list(segs):
                    found.append(rel)
                continue
            names = [[p] + ([p[len("regent_") :]] if p.startswith("regent_") else []) for p in path]
            i = 0
            for alts in names:
                if i < len(segs) and segs[i] in alts:
                    i += 1
            if i == len(segs):
                found.append(rel)
        return found


# ---------------------------------------------------------------------------------------------
# The configuration example.


def yaml_keys(path):
    """Key paths of a plain block-style YAML file ('timing.election_timeout_min_ms'), and the
    top-level keys whose value is null (optional sections shown empty)."""
    paths, null_sections = set(), set()
    stack = []  # (indent, key)
    for line in path.read_text().splitlines():
        m = re.match(r"^( *)([a-z_][a-z0-9_]*):(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        paths.add(".".join(k for _, k in stack))
        if indent == 0 and m.group(3).split("#")[0].strip() in ("null", "~"):
            null_sections.add(m.group(2))
    return paths, null_sections


# ---------------------------------------------------------------------------------------------
# The docs.

SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
HEAD = re.compile(r"((?:%s)(?:(?:::|\.)(?:%s))*)" % (IDENT, IDENT))
SNAKE = re.compile(r"_*[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*")
SCREAMING = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


# In fenced blocks (layouts, shell sessions) only repository paths are checked, and only those
# under the source directories.
FENCED_PATH = re.compile(
    r"(?<![\w/.~$-])((?:crates|src|tests|examples|bench|config|systemd|docs|debian)/[\w./{},-]*)"
)


def doc_spans(path):
    """Returns [(line, text, fenced)] for each inline code span outside fenced blocks and each
    repository path inside them, and [(first line, text)] for each ```rust block."""
    lines = path.read_text().splitlines()
    fence = None
    kept = []
    fenced = []
    rust_blocks = []
    for number, line in enumerate(lines, 1):
        s = line.lstrip()
        if fence is None and (s.startswith("```") or s.startswith("~~~")):
            fence = s[:3]
            if s[3:].strip() == "rust":
                rust_blocks.append((number + 1, []))
                fence += "rust"
            kept.append("")
        elif fence is not None:
            if s.startswith(fence[:3]):
                fence = None
            elif fence.endswith("rust"):
                rust_blocks[-1][1].append(line)
            else:
                fenced += [(number, m.group(1).rstrip("."), True) for m in FENCED_PATH.finditer(line)]
            kept.append("")
        else:
            kept.append(line)
    text = "\n".join(kept)
    spans = []
    for m in SPAN.finditer(text):
        if "\n\n" in m.group(2):
            continue
        line = text.count("\n", 0, m.start()) + 1
        spans.append((line, " ".join(m.group(2).split()), False))
    return sorted(spans + fenced), [(first, "\n".join(body)) for first, body in rust_blocks]


def split_top(s, sep=","):
    """Splits s at sep outside brackets."""
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def matching(s, i):
    """Index just past the bracket group opening at s[i], or -1."""
    pairs = {"(": ")", "{": "}", "<": ">", "[": "]"}
    stack = []
    for j in range(i, len(s)):
        c = s[j]
        if c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return j + 1
        elif c == ">" and s[j - 1] == "-":  # `->`
            continue
    return -1


class Checker:
    def __init__(self):
        self.ws = Workspace(ROOT)
        self.yaml_paths, self.yaml_null = yaml_keys(YAML_FILE) if YAML_FILE.exists() else (set(), set())
        self.yaml_leaves = {p.split(".")[-1] for p in self.yaml_paths}
        self.allow = set()
        if ALLOW_FILE.exists():
            for line in ALLOW_FILE.read_text().splitlines():
                name = line.split("#")[0].strip()
                if name:
                    self.allow.add(name)
        self.allow_used = set()
        self.repo_files, self.repo_dirs = set(), set()
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
            rel = os.path.relpath(dirpath, ROOT)
            if rel != ".":
                self.repo_dirs.add(rel.replace(os.sep, "/"))
            for f in filenames:
                self.repo_files.add(os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/"))
        self.top_entries = {p.split("/")[0] for p in self.repo_files | self.repo_dirs} | {".ci"}
        self.errors = []
        self.names = 0
        self.paths = 0

    # -- names --------------------------------------------------------------------------------

    def known(self, name):
        """Why a single name is known, or None."""
        ws = self.ws
        if name in self.allow:
            self.allow_used.add(name)
        if name in ws.defs:
            return "defined"
        if name in ws.modules:
            return "module"  # a crate (`regent_raft`) or a file's module
        if name in ws.used_qualified:
            return "used"
        if name[0].isupper() and name in ws.code_words:
            return "used"
        if name in ws.literals or re.sub(r"_(bucket|sum|count)$", "", name) in ws.literals:
            return "literal"  # a histogram's series are its name plus _bucket, _sum, _count
        if name in self.yaml_leaves:
            return "config"
        if name in self.allow:
            return "allowed"
        return None

    def check_path(self, segs):
        """Checks a name or path (list of segments); returns an error text or None."""
        ws = self.ws
        anchored = bool(segs) and segs[0] == "crate"
        segs = [s for s in segs if s not in ("crate", "self", "super")]
        if not segs:
            return None
        if "::".join(segs) in self.allow:
            self.allow_used.add("::".join(segs))
            return None
        last = segs[-1]
        if not self.known(last) and not (anchored and last in ws.modules):
            return "not defined in the workspace"
        if len(segs) == 1 and not anchored:
            return None
        qual = segs[-2] if len(segs) >= 2 else None
        if qual and not anchored and all(pair in ws.code_paths for pair in zip(segs, segs[1:])):
            return None  # the code itself says `a::b::c`
        if qual and ws.is_container(qual):
            if ws.member_of(qual, last):
                return None
            if len(segs) >= 3 and ws.member_of("%s::%s" % (segs[-3], qual), last):
                return None
            if ws.defs.get(qual) == {"type"} and last in ws.used_qualified:
                return None  # an item of an aliased outside type (`Nanos::MAX`, Nanos = u64)
            return "%s has no variant, field, method or item %s" % (qual, last)
        mods = segs[:-1]
        if all(m in ws.modules and not m[0].isupper() for m in mods):
            files = ws.files_of_module(mods, anchored)
            if any(last in ws.file_defs[f] or last in ws.file_uses[f] for f in files):
                return None
            if last[0].islower() and ws.files_of_module(mods + [last], anchored):
                return None  # the path of a module
            if not mods:
                return "no crate has %s at its root" % last
            return "not defined or re-exported in module %s" % "::".join(["crate"] * anchored + mods)
        # Outside items: the code must use them together.
        for f, words in ws.file_words.items():
            if qual in words and (last in words):
                return None
        return "no file that mentions %s uses %s" % (qual, last)

    def check_code_span(self, span):
        """Checks a span that starts with a code name; returns [(name, error)] or None if the
        span is not a code citation."""
        m = HEAD.match(span)
        if not m:
            return None
        head = m.group(1)
        rest = span[m.end() :]
        fields, group, generics = [], [], []
        call = False
        if rest == "":
            pass
        elif rest in ("!", "!()"):
            call = True
        elif rest.startswith("(") or rest.startswith("::{") or rest.lstrip().startswith("{") or rest.startswith("<"):
            r = rest.lstrip()
            if r.startswith("::"):
                r = r[2:]
            end = matching(r, 0)
            if end < 0:
                return None
            inner = r[1 : end - 1]
            tail = r[end:].strip()
            if tail and not tail.startswith("->"):
                return None
            if r[0] == "(":
                call = True
            elif rest.startswith("::{"):
                group = split_top(inner)
            elif r[0] == "{":
                fields = [re.match(r"(%s)" % IDENT, f).group(1) for f in split_top(inner) if re.match(IDENT, f)]
                fields = [f for f in fields if f != "_"]
            else:
                generics = re.findall(IDENT, inner)
        elif rest == "::..." or rest == "()":
            call = rest == "()"
        elif rest.startswith(": ") and "." in head and not head[0].isupper():
            pass  # `storage.verify_on_open: true`
        else:
            return None

        segs_dot = head.split(".")
        if len(segs_dot) > 1:
            if head[0].isupper():  # Type.field
                head = head.replace(".", "::")
            elif "::" in head or call:
                return None  # a method call on a value (`time.monotonic_ns()`)
            else:
                return self.check_config(head)
        segs = head.split("::")
        last = segs[-1]
        if "::" not in head and not (call or SNAKE.fullmatch(last) or CAMEL.fullmatch(last) or SCREAMING.fullmatch(last)):
            return []  # a plain word (`tick`, `put {key, value}`): not checked
        out = []
        err = self.check_path(segs)
        out.append((head, err))
        if err is None:
            out += self.check_members(segs, fields, group, generics)
        return out

    def check_members(self, segs, fields, group, generics):
        out = []
        for item in group:
            hm = re.match(IDENT, item)
            if not hm:
                continue
            name = "::".join(segs + [hm.group(0)])
            out.append((name, self.check_path(segs + [hm.group(0)])))
            rest = item[hm.end() :].strip()
            if rest.startswith("{"):
                inner = rest[1 : matching(rest, 0) - 1]
                sub = [re.match(IDENT, f).group(0) for f in split_top(inner) if re.match(IDENT, f)]
                out += self.check_members(segs + [hm.group(0)], sub, [], [])
        container = "::".join(segs[-2:]) if len(segs) >= 2 else segs[-1]
        for f in fields:
            name = "%s { %s }" % ("::".join(segs), f)
            if self.ws.member_of(container, f) or self.ws.member_of(segs[-1], f):
                out.append((name, None))
            elif not self.ws.is_container(segs[-1]):
                out.append((name, "%s has no known fields" % segs[-1]))
            else:
                out.append((name, "%s has no field %s" % ("::".join(segs), f)))
        for g in generics:
            if CAMEL.fullmatch(g) or "_" in g:
                out.append((g, self.check_path([g])))
        return out

    def check_config(self, dotted):
        parts = dotted.split(".")
        if parts[0] not in {p.split(".")[0] for p in self.yaml_paths}:
            return []  # not this file's configuration (a sysctl, a JSON path)
        if dotted in self.yaml_paths:
            return [(dotted, None)]
        if parts[0] in self.yaml_null and len(parts) == 2 and parts[1] in self.ws.defs:
            return [(dotted, None)]  # a key of an optional section shown as null
        return [(dotted, "not a key of config/regent.yaml")]

    # -- Rust snippets ------------------------------------------------------------------------

    def check_rust_block(self, first, text):
        """Checks the items a ```rust block of the docs declares (an API sketch): its types,
        free functions, methods (`impl X { fn y }`, `trait T { fn y }`), variants and fields,
        and its `A::b` paths. Returns [(line, name, error or None)]."""
        code, lits = strip_rust(text)
        blk = Workspace()
        blk.scan_code(code, lits, "doc", ["doc"])
        lines = text.splitlines()

        def line_of(word, after=None):
            """The line of word's first use (after the first line that holds `after`)."""
            start = 0
            if after:
                start = next((i for i, line in enumerate(lines) if re.search(r"\b%s\b" % after, line)), 0)
            for i in range(start, len(lines)):
                if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(word), lines[i]):
                    return first + i
            return first

        out = []
        for name in sorted(blk.toplevel):
            if "variant" in blk.defs.get(name, ()) or "field" in blk.defs.get(name, ()):
                continue
            out.append((line_of(name), name, self.check_path([name])))
        for ty, traits in sorted(blk.impls.items()):
            for t in sorted(traits | {ty}):
                out.append((line_of(t), t, self.check_path([t])))
        for container, names in sorted(blk.members.items()):
            if "::" not in container and "variant" in blk.defs.get(container, ()):
                continue  # its fields are checked under Enum::Variant
            for name in sorted(names):
                shown = "%s::%s" % (container, name)
                if "::" in container:
                    err = None if self.ws.member_of(container, name) else "%s has no field %s" % (container, name)
                else:
                    err = self.check_path([container, name])
                out.append((line_of(name, after=container.split("::")[-1]), shown, err))
        for a, b in sorted(blk.code_paths):
            out.append((line_of(a), "%s::%s" % (a, b), self.check_path([a, b])))
        return out

    # -- repository paths ---------------------------------------------------------------------

    def path_candidate(self, span):
        m = re.fullmatch(r"([\w.@{},/-]+?)(?:::(%s))?" % IDENT, span)
        if not m or span.startswith("/") or "//" in span:
            return None
        p = m.group(1)
        first = p.split("/")[0]
        ext = p.rsplit(".", 1)[-1] if "." in p.split("/")[-1] else ""
        if "/" in p and first in self.top_entries and first != "target":
            return p, m.group(2)
        if ext in FILE_EXTS and re.fullmatch(r"[\w./{},-]+", p):
            return p, m.group(2)
        return None

    def expand(self, p):
        m = re.search(r"\{([^{}]*)\}", p)
        if not m:
            return [p]
        out = []
        for alt in m.group(1).split(","):
            out += self.expand(p[: m.start()] + alt + p[m.end() :])
        return out

    def resolve(self, q, bases):
        """The repository path q names, at the root or under one of the directories bases."""
        for base in ["."] + sorted(bases):
            cand = os.path.normpath(os.path.join(base, q)).replace(os.sep, "/")
            if cand in self.repo_files or cand in self.repo_dirs:
                return cand
        return None

    def doc_bases(self, doc, spans):
        """The directories a doc cites (and those of the files it cites), against which it may
        name files relatively (`node/term.rs` in the chapter on `crates/raft/src/`)."""
        bases = {os.path.relpath(doc.parent, ROOT).replace(os.sep, "/")}
        for _, span, _ in spans:
            pc = self.path_candidate(span)
            if not pc:
                continue
            for q in self.expand(pc[0]):
                q = os.path.normpath(q.rstrip("/")).replace(os.sep, "/")
                if q in self.repo_dirs:
                    bases.add(q)
                elif q in self.repo_files and "/" in q:
                    bases.add(q.rsplit("/", 1)[0])
        return bases

    def check_file(self, p, name, bases):
        errors = []
        for q in self.expand(p):
            q = q.rstrip("/")
            if q in self.allow:
                self.allow_used.add(q)
                errors.append((q, None))
                continue
            found = self.resolve(q, bases)
            if not found:
                errors.append((q, "no such file or directory, at the root or under a directory this doc cites"))
                continue
            if name:
                defs = self.ws.file_defs.get(found, set())
                if name not in defs:
                    errors.append(("%s::%s" % (q, name), "not defined in %s" % found))
                    continue
            errors.append((q, None))
        return errors

    # -- driver -------------------------------------------------------------------------------

    def run(self):
        docs = []
        for pattern in DOCS:
            docs += sorted(ROOT.glob(pattern))
        for doc in docs:
            rel = doc.relative_to(ROOT)
            spans, rust_blocks = doc_spans(doc)
            bases = self.doc_bases(doc, spans)
            for first, block in rust_blocks:
                for line, name, err in self.check_rust_block(first, block):
                    self.names += 1
                    if err:
                        self.errors.append("%s:%d: `%s`: %s" % (rel, line, name, err))
            for line, span, fenced in spans:
                pc = self.path_candidate(span)
                if fenced and not pc:
                    continue
                if pc:
                    results = self.check_file(pc[0], pc[1], bases)
                    self.paths += len(results)
                else:
                    results = self.check_code_span(span) or []
                    self.names += len(results)
                for name, err in results:
                    if err:
                        self.errors.append("%s:%d: `%s`: %s" % (rel, line, name, err))
        for e in self.errors:
            print(e)
        unused = sorted(self.allow - self.allow_used)
        for name in unused:
            print("%s: `%s` is allowed but no doc cites it (drop it)" % (ALLOW_FILE.relative_to(ROOT), name))
        if self.errors:
            print(
                "docs: %d of %d names and file paths are unknown: fix the docs (a Rust name that "
                "moved or was renamed), or add a name that is not this code's to .ci/docs-allow.txt "
                "with the reason" % (len(self.errors), self.names + self.paths)
            )
        if unused:
            print("docs: %d entries of .ci/docs-allow.txt are cited nowhere: drop them" % len(unused))
        if self.errors or unused:
            return 1
        print("docs: %d names checked, all found (and %d file paths, all present)" % (self.names, self.paths))
        return 0


if __name__ == "__main__":
    sys.exit(Checker().run())
