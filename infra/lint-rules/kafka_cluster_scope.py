"""cfn-lint rule: MSK IAM data-plane permissions (`kafka-cluster:...`) are
granted action by action and on named ARNs (the cluster, its topics, its
consumer groups), never as `kafka-cluster:*` or on `Resource: "*"`. A wildcard
would let a compromised function read or write every topic of the cluster.

Run with: cfn-lint --append-rules infra/lint-rules infra/template.yaml
"""

from cfnlint.rules import CloudFormationLintRule, RuleMatch


def _literals(value):
    """The literal strings of an Action/Resource value (intrinsics are skipped)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _statements(node, path):
    """Every IAM policy statement (a mapping with Effect and Action) under node."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node, path
        for key, value in node.items():
            yield from _statements(value, path + [key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _statements(value, path + [i])


class KafkaClusterScoped(CloudFormationLintRule):
    id = "E9102"
    shortdesc = "kafka-cluster actions are named and scoped"
    description = (
        "IAM statements with kafka-cluster actions must name each action (no wildcard) "
        "and name their resources (no \"*\")."
    )
    source_url = "README.md"
    tags = ["resources", "iam", "msk", "logpipe"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.template.get("Resources", {}).items():
            for statement, path in _statements(resource, ["Resources", name]):
                actions = [a for a in _literals(statement.get("Action")) if a.lower().startswith("kafka-cluster:")]
                if not actions:
                    continue
                for action in actions:
                    if "*" in action:
                        matches.append(RuleMatch(path + ["Action"], f"{name}: {action} grants every matching kafka-cluster action; name each one"))
                if any("*" == r.strip() for r in _literals(statement.get("Resource"))):
                    matches.append(RuleMatch(path + ["Resource"], f"{name}: kafka-cluster actions on Resource \"*\"; scope them to the cluster, topic and group ARNs"))
        return matches
