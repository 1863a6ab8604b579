"""deploy/iam-policy.json through parliament (duo-labs), an IAM policy linter we did not write,
which knows each action's resource types from AWS's Service Authorization Reference.

It caught a grant that did nothing: sagemaker:DescribeEndpointConfig on `endpoint/*`, while its
resource is `endpoint-config/*`. `Resource: "*"` stays only on actions that support no narrower
resource; their statements say so in their Sid. Which actions asyncscale calls is checked by
`iam_policy_grants_exactly_the_calls_asyncscale_makes` (crates/controller/tests/end_to_end/cli.rs).
"""

import json
from pathlib import Path

from parliament import analyze_policy_string

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "iam-policy.json"


def test_parliament_finds_nothing_in_the_iam_policy():
    policy = analyze_policy_string(POLICY.read_text())
    findings = [(f.issue, f.detail) for f in policy.findings]
    assert findings == []


def test_only_actions_without_a_resource_scope_are_granted_on_every_resource():
    for statement in json.loads(POLICY.read_text())["Statement"]:
        if statement["Resource"] == "*":
            assert statement["Sid"].endswith("NoResourceScopeExists"), statement


def test_a_grant_on_the_wrong_resource_type_is_caught():
    """The mistake this test exists for, so that a parliament that stopped seeing it fails here."""
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sagemaker:DescribeEndpointConfig",
                "Resource": "arn:aws:sagemaker:*:*:endpoint/*",
            }
        ],
    }
    issues = [f.issue for f in analyze_policy_string(json.dumps(wrong)).findings]
    assert "RESOURCE_MISMATCH" in issues
