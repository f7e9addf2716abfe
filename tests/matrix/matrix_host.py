"""The host side of one pair of the version matrix: ``python matrix_host.py ENV [PROTOCOL-LIST ...]``.

Run by each host interpreter in the project folder (``nbmatrix.py`` and ``nbcore.yaml`` there).
For every protocol list it opens ENV, exchanges what ``nbmatrix`` defines in both directions,
a proxy, a generator and an exception carrying an array, and prints one JSON object:
``{"host": versions, "worker": versions, "protocols": {list: negotiated}, "failures": [text]}``.
"""
import json
import sys
import traceback

import nbmatrix
from nbcore import RemoteObject, open_backend


def check(failures, label, condition, detail=""):
    if not condition:
        failures.append("%s: %s" % (label, detail))


def exchange_with_numpy_on_both_sides(env, failures):
    np = nbmatrix.np
    objects = nbmatrix.objects()
    expected = nbmatrix.describe_all(objects)
    seen = env.call("nbmatrix:describe_all", objects)
    for name in expected:
        check(failures, "host to worker, " + name, seen.get(name) == expected[name], "%r != %r" % (seen.get(name), expected[name]))
    for label, got in (("worker to host", env.call("nbmatrix:objects")),
                       ("round trip", env.call("nbmatrix:echo", objects))):
        described = nbmatrix.describe_all(got)
        for name in expected:
            check(failures, "%s, %s" % (label, name), described.get(name) == expected[name],
                  "%r != %r" % (described.get(name), expected[name]))
    arr = objects["float32 Fortran"]
    rec = np.array([(1.0, 2), (3.0, 4)], dtype=[("x", "f8"), ("y", "i4")])
    total, scalar, half = env.call("nbmatrix:take_and_return", arr, rec)
    check(failures, "acceptance call", total == 66.0 and type(scalar) is np.float32 and scalar == 2.5
          and half.tolist() == arr[::2].tolist(), repr((total, scalar, half)))
    scaler = env.remote("nbmatrix:Scaler")(2)
    check(failures, "proxy", isinstance(scaler, RemoteObject), type(scaler).__name__)
    scaled = scaler.scale(arr)
    check(failures, "proxy method", scaled.dtype == np.float32 and (scaled == arr * 2).all(), repr(scaled))
    frames = list(env.call("nbmatrix:frames", 3))
    check(failures, "generator of arrays", [f.tolist() for f in frames] == [[[i] * 3] * 2 for i in range(3)]
          and all(f.flags.f_contiguous for f in frames), repr(frames))
    try:
        env.call("nbmatrix:fail_with_array")
        failures.append("exception carrying an array: nothing raised")
    except ValueError as exc:
        check(failures, "exception carrying an array", exc.args[0] == "bad values" and exc.args[1].tolist() == [0, 1, 2]
              and exc.args[1].dtype == np.float32, repr(exc.args))


def numpy_tuple(version):
    return tuple(int(part) for part in version.split(".")[:2])


def object_arrays_keep_numpys_own_pickling(env, failures):
    """Object arrays cross where numpy's own pickles are read (numpy 2 reads numpy 1's, numpy >= 1.26
    numpy 2's); elsewhere the worker's error is one line naming both sides and versions."""
    np = nbmatrix.np
    host, worker = nbmatrix.versions(), env.call("nbmatrix:versions")
    mixed = np.array([1, "a", None], dtype=object)
    if numpy_tuple(host["numpy"]) >= (2, 0) and numpy_tuple(worker["numpy"]) < (1, 26):
        try:
            env.call("nbmatrix:echo", mixed)
            failures.append("object array to numpy %s: nothing raised" % worker["numpy"])
        except ModuleNotFoundError as exc:
            text = str(exc)
            wanted = ("the environment (Python %s, numpy %s) cannot rebuild an argument of type numpy._core."
                      % (worker["python"], worker["numpy"]),
                      "from the host (Python %s, numpy %s): No module named 'numpy._core'" % (host["python"], host["numpy"]))
            check(failures, "one-line error for an object array", all(w in text for w in wanted) and "\n" not in text, text)
    else:
        back = env.call("nbmatrix:echo", mixed)
        check(failures, "object array", back.dtype == object and back.tolist() == [1, "a", None], repr(back))


def exchange_without_numpy_in_the_worker(env, failures):
    np = nbmatrix.np
    check(failures, "plain call", env.call("nbmatrix:echo", {"a": [1, 2.5, b"x"]}) == {"a": [1, 2.5, b"x"]})
    try:
        env.call("nbmatrix:echo", np.arange(3))
        failures.append("array to a worker without numpy: nothing raised")
    except ModuleNotFoundError as exc:
        text = str(exc)
        host, worker = nbmatrix.versions(), env.call("nbmatrix:versions")
        wanted = ("the environment (Python %s, no numpy) cannot rebuild an argument" % worker["python"],
                  "from the host (Python %s, numpy %s): No module named 'numpy'" % (host["python"], host["numpy"]))
        check(failures, "one-line error for an array sent to a worker without numpy",
              all(w in text for w in wanted) and "\n" not in text, text)
    scaler = env.remote("nbmatrix:Scaler")(3)
    check(failures, "proxy", scaler.tag() == "scaler 3")
    check(failures, "generator", list(env.call("nbmatrix:plain_frames", 2)) == [b"\0" * 3, b"\1" * 3])


def exchange_without_numpy_on_the_host(env, failures, worker_has_numpy):
    check(failures, "plain call", env.call("nbmatrix:echo", [1, "x"]) == [1, "x"])
    scaler = env.remote("nbmatrix:Scaler")(3)
    check(failures, "proxy", scaler.tag() == "scaler 3")
    check(failures, "generator", list(env.call("nbmatrix:plain_frames", 2)) == [b"\0" * 3, b"\1" * 3])
    if not worker_has_numpy:
        return
    array = env.call("nbmatrix:one_array")
    check(failures, "an array reaches a host without numpy as a proxy",
          isinstance(array, RemoteObject) and array.tolist() == [0, 1, 2, 3], repr(array))
    try:
        env.call("nbmatrix:fail_with_array")
        failures.append("exception carrying an array: nothing raised")
    except Exception as exc:  # its array cannot be rebuilt here: the worker's description stands in
        check(failures, "exception carrying an array", "bad values" in str(exc), repr(exc))


def main():
    env_name, protocol_lists = sys.argv[1], sys.argv[2:] or ["tcp-pickle", "tcp-pickle,shm-pickle"]
    report = {"host": nbmatrix.versions(), "worker": None, "protocols": {}, "failures": []}
    for protocols in protocol_lists:
        failures = []
        try:
            with open_backend(env_name, protocol=protocols) as env:
                report["protocols"][protocols] = env.protocol
                worker = report["worker"] = env.call("nbmatrix:versions")
                if report["host"]["numpy"] is None:
                    exchange_without_numpy_on_the_host(env, failures, worker["numpy"] is not None)
                elif worker["numpy"] is None:
                    exchange_without_numpy_in_the_worker(env, failures)
                else:
                    exchange_with_numpy_on_both_sides(env, failures)
                    object_arrays_keep_numpys_own_pickling(env, failures)
        except Exception:
            failures.append("unexpected error:\n" + traceback.format_exc())
        report["failures"].extend("[%s] %s" % (protocols, f) for f in failures)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
