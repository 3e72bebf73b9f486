"""Assemble the final image's root file system, run in the Dockerfile's builder stage.

    python3 rootfs.py ROOT VENV UID

ROOT gets only what the daemon needs to run, taken from the builder itself:
- the virtual environment VENV (twcmaster and its dependencies) and the interpreter it points
  to, with the standard library less what a daemon never imports (tests, IDLE, Tk, curses...);
- every shared library those binaries load (ldd), with the dynamic loader;
- the CA bundle (the builder's, EXTRA_CA_CERTS included), time zones, nsswitch.conf;
- /etc/passwd and /etc/group with root and the twcmaster user (UID) in group dialout (20,
  Debian's), and /tmp, /etc/twcmanager, /var/lib/twcmaster.

No shell, no package manager, no pip: the image is this tree on ``scratch`` (the same idea as
Google's distroless images, which have no arm/v7 Python image). The builder's symlinks are
kept as symlinks (/lib -> usr/lib on a merged-/usr Debian), so every path resolves as it did
in the builder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Parts of the standard library a daemon never imports (and which pull in libraries).
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "venv", "sqlite3", "dbm", "curses",
    "site-packages",  # the base interpreter's pip and setuptools (official images): not used
}  # fmt: skip
STDLIB_SKIP_PREFIXES = ("config-3",)  # the static library and Makefile for building C modules
DYNLOAD_SKIP_PREFIXES = (
    "_test", "_ctypes_test", "xxlimited", "_xxtestfuzz", "_xxsubinterpreters", "_tkinter",
    "_curses", "readline", "_dbm", "_gdbm", "nis", "ossaudiodev", "_sqlite3", "_crypt",
    "_lsprof",
)  # fmt: skip
DIALOUT_GID = 20
# ld.so.cache: where the loader finds a library outside its built-in directories (an official
# python image's /usr/local/lib); its entries for libraries left out just miss.
ETC_FILES = (
    "/etc/nsswitch.conf", "/etc/services", "/etc/protocols", "/etc/ssl/openssl.cnf",
    "/etc/ld.so.cache",
)  # fmt: skip
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dest(self, path: str | Path) -> Path:
        return self.root / str(path).lstrip("/")

    def add(self, path: str, ignore=None) -> None:
        """Copy ``path`` into the tree as it is: every symlink met on the way (in a parent or
        at the end) as a symlink, then what it points to; files and directories whole."""
        parts = Path(path).parts
        current = Path("/")
        for index, part in enumerate(parts[1:], start=1):
            current = current / part
            if current.is_symlink():
                link = self.dest(current)
                if not link.is_symlink() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(os.readlink(current))
                target = Path(os.path.normpath(current.parent / os.readlink(current)))
                self.add(str(target.joinpath(*parts[index + 1 :])), ignore)
                return
        dest = self.dest(path)
        if os.path.isdir(path):
            shutil.copytree(path, dest, symlinks=True, ignore=ignore, dirs_exist_ok=True)
        elif os.path.exists(path):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest, follow_symlinks=False)

    def elf_files(self):
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(folder) / name
                if path.is_symlink():
                    continue
                with path.open("rb") as file:
                    if file.read(4) == b"\x7fELF":
                        yield path

    def drop_dangling_links(self) -> None:
        """Links whose target was left out (e.g. Debian's sitecustomize.py -> /etc/python3.11)."""
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(folder) / name
                if path.is_symlink() and not self._resolves(path):
                    path.unlink()

    def _resolves(self, link: Path) -> bool:
        for _ in range(40):
            target = os.readlink(link)
            inside = (
                self.dest(target)
                if target.startswith("/")
                else Path(os.path.normpath(link.parent / target))
            )
            if not inside.is_symlink():
                return inside.exists()
            link = inside
        return False


def shared_libraries(binary: Path) -> set[str]:
    """The libraries ``binary`` loads, and the loader, as the builder resolves them."""
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    found = set()
    for line in done.stdout.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1]
            if target == "not":
                sys.exit(f"rootfs: {binary} needs {words[0]}, which the builder does not have")
            found.add(os.path.normpath(target))  # "$ORIGIN/../lib" shows as bin/../lib
        elif words and words[0].startswith("/"):
            found.add(os.path.normpath(words[0]))  # the dynamic loader
    return found


def leave_out(folder: str, names: list[str]) -> set[str]:
    """What ``shutil.copytree`` skips in the standard library and the time zones."""
    skipped = {
        name
        for name in names
        if name in STDLIB_SKIP
        or name.startswith(STDLIB_SKIP_PREFIXES)
        or name.endswith((".opt-1.pyc", ".opt-2.pyc"))
    }
    if os.path.basename(folder) == "lib-dynload":
        skipped |= {name for name in names if name.startswith(DYNLOAD_SKIP_PREFIXES)}
    if os.path.basename(folder) == "zoneinfo":
        skipped.add("right")  # leap-second variants
    return skipped


def write_accounts(tree: Tree, uid: int) -> None:
    etc = tree.dest("/etc")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"twcmaster:x:{uid}:{uid}:twcmaster:/var/lib/twcmaster:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    )
    (etc / "group").write_text(
        f"root:x:0:\ndialout:x:{DIALOUT_GID}:twcmaster\ntwcmaster:x:{uid}:\nnogroup:x:65534:\n"
    )


def make_dirs(tree: Tree, uid: int) -> None:
    for path, mode, owner in (
        ("/tmp", 0o1777, 0),
        ("/root", 0o700, 0),
        ("/etc/twcmanager", 0o755, uid),
        ("/var/lib/twcmaster", 0o755, uid),
    ):
        dest = tree.dest(path)
        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, mode)
        os.chown(dest, owner, owner)


def main(root: str, venv: str, uid: str) -> None:
    tree = Tree(Path(root))
    tree.add(venv)
    tree.add(os.path.join(venv, "bin", "python3"))  # the interpreter, through its links
    paths = sysconfig.get_paths()
    for folder in sorted({paths["stdlib"], paths["platstdlib"]}):  # one folder on Debian
        tree.add(folder, ignore=leave_out)
    libraries: set[str] = set()
    for binary in list(tree.elf_files()):
        libraries |= shared_libraries(binary)
    for library in sorted(libraries):
        tree.add(library)
    for path in (CA_BUNDLE, "/usr/share/zoneinfo", *ETC_FILES):
        tree.add(path, ignore=leave_out)
    tree.drop_dangling_links()
    write_accounts(tree, int(uid))
    make_dirs(tree, int(uid))
    # Byte code for what lacks it, compiled for the paths the files have in the image.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", root, "-p", "/",
         str(tree.dest(paths["stdlib"])), str(tree.dest(venv))],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
