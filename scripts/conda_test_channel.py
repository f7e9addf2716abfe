"""Build the local conda channel of nb-conda's tests from Debian's packages (and pyenv's Pythons).

    python conda_test_channel.py DEBS_DIR CHANNEL_DIR [PYENV_VERSION_DIR ...]

DEBS_DIR holds the .debs of ``python3.11-minimal``, ``libpython3.11-minimal``,
``libpython3.11-stdlib`` and ``python3-pip-whl``.  CHANNEL_DIR receives a channel
with these real conda packages, then its repodata (rattler's indexer):

* ``linux-64/python-3.11.x-debian_0.tar.bz2``: Debian's interpreter and standard
  library (it links only libc, libm, libz and libexpat, so it runs from any
  prefix), with CEP 17's ``python_site_packages_path`` so noarch packages land
  where Debian's Python looks;
* ``linux-64/python-3.9.x-pyenv_0.tar.bz2`` for each PYENV_VERSION_DIR
  (``$(pyenv root)/versions/3.9.18``): the interpreter pyenv built on this machine, its
  shared libpython and its standard library (no tests, no site-packages), made
  relocatable as conda-forge's python is: its ELF files' run paths point at
  ``$ORIGIN/...`` instead of the pyenv folder, and the text files that name that
  folder (sysconfig data, Makefile, python-config) carry it as a prefix placeholder,
  which the installer replaces with the environment's prefix;
* ``noarch/pip-23.x-debian_0.tar.bz2``: Debian's pip wheel as a ``noarch: python``
  package with its entry points;
* ``noarch/nbtest-activation-1.0-0.tar.bz2``: an ``etc/conda/activate.d`` script
  that exports ``NBTEST_ACTIVATED`` (proves that environments are activated).
"""
import asyncio
import fnmatch
import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib")
PIP_DEB = "python3-pip-whl"
SITE_PACKAGES = "lib/python3.11/dist-packages"
ACTIVATION_SCRIPT = """\
# Set by the nbtest-activation package's activate.d script.
export NBTEST_ACTIVATED="yes:${CONDA_PREFIX}"
"""
DEACTIVATION_SCRIPT = "unset NBTEST_ACTIVATED\n"


def deb(debs_dir, package):
    matches = sorted(glob.glob(os.path.join(debs_dir, package + "_*.deb")))
    if not matches:
        sys.exit("conda_test_channel: no %s_*.deb in %s" % (package, debs_dir))
    return matches[-1]


def deb_version(path):
    """The upstream version of a .deb's file name: python3.11-minimal_3.11.2-6+deb12u9_amd64.deb -> 3.11.2."""
    return re.split(r"[-+~]", os.path.basename(path).split("_")[1])[0]


def extract_debs(paths, into):
    for path in paths:
        subprocess.run(["dpkg-deb", "-x", path, into], check=True)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(root, index, out_dir, link=None, placeholder=None):
    """Write ``root``'s files as the conda package ``index`` describes into ``out_dir``; return its path.

    Text files that contain ``placeholder`` are marked for the installer to replace it with the prefix."""
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                entries.append({"_path": rel, "path_type": "softlink", "size_in_bytes": 0})
            else:
                entry = {"_path": rel, "path_type": "hardlink", "sha256": sha256(full),
                         "size_in_bytes": os.path.getsize(full)}
                if placeholder and contains_text(full, placeholder):
                    entry.update(file_mode="text", prefix_placeholder=placeholder)
                entries.append(entry)
    info = {
        "index.json": dict(index, timestamp=int(time.time() * 1000)),
        "paths.json": {"paths": entries, "paths_version": 1},
        "files": "".join(e["_path"] + "\n" for e in entries),
    }
    if link:
        info["link.json"] = link
    name = "%s-%s-%s.tar.bz2" % (index["name"], index["version"], index["build"])
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, name)
    with tarfile.open(target + ".tmp", "w:bz2") as tar:
        for info_name, content in sorted(info.items()):
            data = (content if isinstance(content, str) else json.dumps(content, indent=1)).encode()
            member = tarfile.TarInfo("info/" + info_name)
            member.size, member.mtime, member.mode = len(data), time.time(), 0o644
            tar.addfile(member, io.BytesIO(data))
        for entry in entries:
            tar.add(os.path.join(root, entry["_path"]), arcname=entry["_path"], recursive=False)
    os.replace(target + ".tmp", target)
    return target


def contains_text(path, text):
    with open(path, "rb") as f:
        data = f.read()
    return text.encode() in data and b"\0" not in data


def base_index(name, version, build, subdir, **extra):
    return dict({"name": name, "version": version, "build": build, "build_number": 0, "depends": [],
                 "license": "PSF-2.0" if name == "python" else "MIT", "subdir": subdir}, **extra)


def python_package(debs_dir, channel, work):
    debs = [deb(debs_dir, p) for p in PYTHON_DEBS]
    version = deb_version(debs[0])
    extracted = os.path.join(work, "python-debs")
    extract_debs(debs, extracted)
    root = os.path.join(work, "python")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2(os.path.join(extracted, "usr/bin/python3.11"), os.path.join(root, "bin/python3.11"))
    for alias in ("python3", "python"):
        os.symlink("python3.11", os.path.join(root, "bin", alias))
    shutil.copytree(os.path.join(extracted, "usr/lib/python3.11"), os.path.join(root, "lib/python3.11"), symlinks=True)
    # PEP 668: Debian marks its own Python as externally managed; in a conda prefix pip owns it.  And
    # sitecustomize.py links to /etc/python3.11, outside any prefix.
    for debian_only in ("EXTERNALLY-MANAGED", "sitecustomize.py"):
        path = os.path.join(root, "lib/python3.11", debian_only)
        if os.path.lexists(path):
            os.remove(path)
    os.makedirs(os.path.join(root, SITE_PACKAGES), exist_ok=True)
    compile_standard_library(os.path.join(root, "bin/python3.11"), os.path.join(root, "lib/python3.11"), "lib/python3.11")
    index = base_index("python", version, "debian_0", "linux-64", platform="linux", arch="x86_64",
                       python_site_packages_path=SITE_PACKAGES)
    return pack(root, index, os.path.join(channel, "linux-64"))


def compile_standard_library(python, library, relative, skip=()):
    """Byte-code, as conda-forge's python ships it (Debian and pyenv compile at install time instead): without it
    every start of an interpreter that may not write __pycache__ compiles the modules it imports.  Unchecked
    hashes, so that the installer's fresh timestamps do not make it stale; ``skip``'s modules are left out
    (the installer rewrites them)."""
    for cache in glob.glob(os.path.join(library, "**", "__pycache__"), recursive=True):
        shutil.rmtree(cache)
    subprocess.run([python, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash",
                    "-d", relative, library], check=True, env={"PATH": os.environ.get("PATH", "")})
    for path in skip:
        name = os.path.splitext(os.path.basename(path))[0]
        for compiled in glob.glob(os.path.join(os.path.dirname(path), "__pycache__", name + ".*.pyc")):
            os.remove(compiled)


#: What a pyenv version holds that a conda python leaves out: tests, IDLE, what pip installed, static libraries.
PYENV_LEFT_OUT = ("test", "tests", "idlelib", "site-packages", "*.a")


def relative_run_path(path, root, old):
    """Point an ELF file's run path ``old`` (``$PYENV_ROOT/versions/3.9.18/lib``) at ``$ORIGIN/...``: the
    new string is shorter, so it is written over the old one in place, padded with NULs."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"\x7fELF"):
        return
    needle = old.encode() + b"\0"
    count = data.count(needle)
    if count == 0:
        return
    if count != 1:
        sys.exit("conda_test_channel: %s names %s %d times; expected one run path" % (path, old, count))
    new = ("$ORIGIN/" + os.path.relpath(os.path.join(root, "lib"), os.path.dirname(path))).encode()
    if len(new) >= len(needle):
        sys.exit("conda_test_channel: %s: run path %s does not fit in place of %s" % (path, new, old))
    with open(path, "wb") as f:
        f.write(data.replace(needle, new.ljust(len(needle), b"\0")))


def pyenv_python_package(version_dir, channel, work):
    """The interpreter pyenv built in ``version_dir`` (``.../versions/3.9.18``), relocatable."""
    version_dir = os.path.realpath(version_dir)
    version = os.path.basename(version_dir)
    minor = "python" + ".".join(version.split(".")[:2])
    root = os.path.join(work, "python-" + version)
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2(os.path.join(version_dir, "bin", minor), os.path.join(root, "bin", minor))
    for alias in ("python3", "python"):
        os.symlink(minor, os.path.join(root, "bin", alias))
    shutil.copytree(os.path.join(version_dir, "lib"), os.path.join(root, "lib"), symlinks=True,
                    ignore=lambda folder, names: [n for n in names if any(fnmatch.fnmatch(n, p) for p in PYENV_LEFT_OUT)])
    library = os.path.join(root, "lib", minor)
    os.makedirs(os.path.join(library, "site-packages"))
    for folder, _, files in os.walk(root):
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                relative_run_path(full, root, os.path.join(version_dir, "lib"))
    naming = [os.path.join(folder, name) for folder, _, files in os.walk(library) for name in files
              if name.endswith(".py") and contains_text(os.path.join(folder, name), version_dir)]
    compile_standard_library(os.path.join(root, "bin", minor), library, "lib/" + minor, skip=naming)
    index = base_index("python", version, "pyenv_0", "linux-64", platform="linux", arch="x86_64")
    return pack(root, index, os.path.join(channel, "linux-64"), placeholder=version_dir)


def pip_package(debs_dir, channel, work):
    extracted = os.path.join(work, "pip-deb")
    extract_debs([deb(debs_dir, PIP_DEB)], extracted)
    wheels = glob.glob(os.path.join(extracted, "usr/share/python-wheels/pip-*.whl"))
    if not wheels:
        sys.exit("conda_test_channel: the %s package holds no pip wheel" % PIP_DEB)
    version = os.path.basename(wheels[0]).split("-")[1]
    root = os.path.join(work, "pip")
    site = os.path.join(root, "site-packages")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(site)
    for dist_info in glob.glob(os.path.join(site, "*.dist-info")):
        os.remove(os.path.join(dist_info, "RECORD"))  # lists the wheel's paths, not the prefix's
        with open(os.path.join(dist_info, "INSTALLER"), "w") as f:
            f.write("conda\n")
    index = base_index("pip", version, "debian_0", "noarch", noarch="python", depends=["python >=3.7"])
    link = {"noarch": {"type": "python", "entry_points": ["pip = pip._internal.cli.main:main",
                                                          "pip3 = pip._internal.cli.main:main"]},
            "package_metadata_version": 1}
    return pack(root, index, os.path.join(channel, "noarch"), link=link)


def activation_package(channel, work):
    root = os.path.join(work, "nbtest-activation")
    for folder, script in (("activate.d", ACTIVATION_SCRIPT), ("deactivate.d", DEACTIVATION_SCRIPT)):
        os.makedirs(os.path.join(root, "etc/conda", folder))
        with open(os.path.join(root, "etc/conda", folder, "nbtest-activation.sh"), "w") as f:
            f.write(script)
    index = base_index("nbtest-activation", "1.0", "0", "noarch", noarch="generic")
    return pack(root, index, os.path.join(channel, "noarch"))


def main(debs_dir, channel, pyenv_versions):
    from rattler.index import index_fs

    with tempfile.TemporaryDirectory() as work:
        for path in ([python_package(debs_dir, channel, work)]
                     + [pyenv_python_package(version, channel, work) for version in pyenv_versions]
                     + [pip_package(debs_dir, channel, work), activation_package(channel, work)]):
            print("conda_test_channel: built %s" % os.path.relpath(path, channel), file=sys.stderr)
    asyncio.run(index_fs(channel))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
    # py-rattler's runtime threads can abort a normal interpreter shutdown ("PyGILState_Release"): the work
    # is done and flushed, so leave without one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
