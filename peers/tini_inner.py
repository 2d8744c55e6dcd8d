"""Runs tini's test/run_inner_tests.py against fleet-init, one named test at a time.

tini's script is one main() whose tests follow each other, each announced by a
print("Running ..."). This adapter parses that file (fetched at test time, never copied here),
cuts main()'s body into those tests, and runs each in turn in one shared namespace, so that a
failing test is reported and the next ones still run, and excluded tests are skipped by name.

Statements that start no process, print nothing and assert nothing (the set-up: paths,
the list of targets) are "glue": they always run, even after a failure in their group.

usage: tini_inner.py RUN_INNER_TESTS_PY EXCLUDED_TSV
Prints one line per test (PASS/FAIL/SKIP name) and a last line "N passed, M failed, K skipped".
"""

import ast
import sys
import traceback

ACTIVE_CALLS = {"print", "Popen", "busy_wait", "wait", "communicate", "send_signal"}


def calls_in(node):
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def is_glue(stmt):
    has_assert = any(isinstance(sub, ast.Assert) for sub in ast.walk(stmt))
    return not has_assert and not (calls_in(stmt) & ACTIVE_CALLS)


def title_of(stmt):
    """The first 'Running ...' string printed by this statement, if any."""
    for sub in ast.walk(stmt):
        if not (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                and sub.func.id == "print" and sub.args):
            continue
        arg = sub.args[0]
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute):
            arg = arg.func.value  # "...".format(...)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            if arg.value.lower().startswith("running"):
                return arg.value
    return None


def groups(main):
    """[(title, [statements])]: a new test starts at each statement that announces one."""
    found = [("set-up", [])]
    for stmt in main.body:
        title = title_of(stmt)
        if title is not None:
            found.append((title, [stmt]))
        else:
            found[-1][1].append(stmt)
    return found


def excluded_tests(path):
    excluded = {}
    with open(path) as lines:
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            suite, test, reason = line.rstrip("\n").split("\t", 2)
            if suite == "tini":
                excluded[test] = reason
    return excluded


def main():
    script, excluded_path = sys.argv[1], sys.argv[2]
    excluded = excluded_tests(excluded_path)
    with open(script) as source:
        tree = ast.parse(source.read(), script)
    namespace = {"__name__": "tini_inner_tests", "__file__": script}
    # Imports, helpers and constants of the module; main() itself is taken apart below.
    module_level = [node for node in tree.body
                    if not (isinstance(node, ast.If) or
                            (isinstance(node, ast.FunctionDef) and node.name == "main"))]
    exec(compile(ast.Module(body=module_level, type_ignores=[]), script, "exec"), namespace)
    main_def = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == "main")
    passed = failed = skipped = 0
    for title, statements in groups(main_def):
        is_test = title != "set-up"
        if is_test and title in excluded:
            skipped += 1
            print("SKIP {}: {}".format(title, excluded[title]), flush=True)
            # Its glue still runs: later tests may need what it sets up.
            statements = [stmt for stmt in statements if is_glue(stmt)]
            is_test = False
        error = None
        for stmt in statements:
            if error is not None and not is_glue(stmt):
                continue
            code = compile(ast.Module(body=[stmt], type_ignores=[]), script, "exec")
            try:
                exec(code, namespace)
            except BaseException:  # an assert, a timeout, anything: this test failed
                if error is None:
                    error = traceback.format_exc()
        if not is_test:
            if error is not None:
                print("set-up failed:\n" + error, flush=True)
                failed += 1
            continue
        if error is None:
            passed += 1
            print("PASS {}".format(title), flush=True)
        else:
            failed += 1
            print("FAIL {}\n{}".format(title, error), flush=True)
    print("tini: {} passed, {} failed, {} skipped".format(passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
