"""/api/git/checkout against repositories inside the sandbox (file:// URLs;
sandboxes have no network yet), and its GIT_* errors."""

import pytest

from helpers import assert_error

pytestmark = pytest.mark.git

REPO_SETUP = ("set -e; rm -rf /tmp/origin; mkdir -p /tmp/origin; cd /tmp/origin; "
              "git init -q -b main; git config user.email t@e; git config user.name t; "
              "echo one > a.txt; git add a.txt; git commit -q -m one; "
              "git checkout -q -b feature; echo two > b.txt; git add b.txt; git commit -q -m two; "
              "git checkout -q main")


@pytest.fixture(scope="module")
def repo_sb(api, sb):
    api.sh(sb, REPO_SETUP)
    return sb


def test_clone_default_branch_and_target(api, repo_sb):
    r = api.call(repo_sb, "git/checkout", {"repoUrl": "file:///tmp/origin"})
    assert r["success"] is True and r["branch"] == "main" and r["targetDir"] == "/workspace/origin"
    assert api.sh(repo_sb, "cat /workspace/origin/a.txt; test ! -e /workspace/origin/b.txt && echo no-b") == \
        "one\nno-b\n"


def test_clone_branch_depth_and_dir(api, repo_sb):
    r = api.call(repo_sb, "git/checkout", {"repoUrl": "file:///tmp/origin", "branch": "feature",
                                            "targetDir": "/tmp/feat", "depth": 1})
    assert r["branch"] == "feature" and r["targetDir"] == "/tmp/feat"
    assert api.sh(repo_sb, "cat /tmp/feat/b.txt; git -C /tmp/feat rev-list --count HEAD") == "two\n1\n"


def test_errors(api, repo_sb):
    url = f"/v1/sandboxes/{repo_sb}/api/git/checkout"
    r = api.post(url, {"repoUrl": "file:///tmp/nothing-here", "targetDir": "/tmp/x1"})
    assert_error(r, 404, "GIT_REPOSITORY_NOT_FOUND")
    assert r.json()["context"]["exitCode"] != 0 and r.json()["context"]["stderr"]
    r = api.post(url, {"repoUrl": "file:///tmp/origin", "branch": "nope", "targetDir": "/tmp/x2"})
    assert_error(r, 404, "GIT_BRANCH_NOT_FOUND")
    assert_error(api.post(url, {"repoUrl": "--upload-pack=touch /tmp/pwned"}), 400, "INVALID_GIT_URL")
    assert_error(api.post(url, {"repoUrl": "not a url"}), 400, "INVALID_GIT_URL")
    assert_error(api.post(url, {}), 400, "VALIDATION_FAILED")
    assert_error(api.post(url, {"repoUrl": "file:///tmp/origin", "branch": "--orphan"}), 400, "VALIDATION_FAILED")
    assert api.sh(repo_sb, "test -e /tmp/pwned && echo pwned || echo clean") == "clean\n"
    # a clone into an existing non-empty directory fails with git's message
    r = api.post(url, {"repoUrl": "file:///tmp/origin", "targetDir": "/tmp/origin"})
    assert_error(r, 500, "GIT_OPERATION_FAILED")
    assert "already exists" in r.json()["context"]["stderr"]


def test_interpreter_health_answers(api, sb):
    r = api.get(f"/v1/sandboxes/{sb}/api/interpreter/health")
    assert r.status_code == 200
    assert r.json()["success"] is True and r.json()["status"] in ("healthy", "unhealthy")
