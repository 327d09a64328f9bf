"""cfn-lint rule for logpipe's delivery contract (see README "Delivery semantics"):
a Kafka event source mapping with `FunctionResponseTypes: [ReportBatchItemFailures]`
and the function's `REPORT_BATCH_ITEM_FAILURES=true` go together. A failure list
returned to a mapping that ignores it loses records; a mapping that expects one
from a function that errors instead only retries more than it needs to, but the
two settings drifting apart is always a mistake.

Run with: cfn-lint --append-rules infra/lint-rules infra/template.yaml
"""

from cfnlint.rules import CloudFormationLintRule, RuleMatch


def _function_id(value):
    """The logical id behind `FunctionName: !Ref X` / `!GetAtt X.Arn`, else None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        attr = value.get("Fn::GetAtt")
        if isinstance(attr, list) and attr:
            return attr[0]
        if isinstance(attr, str):
            return attr.split(".")[0]
    return None


class BatchItemFailuresTogether(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "ReportBatchItemFailures and REPORT_BATCH_ITEM_FAILURES go together"
    description = (
        "A Kafka event source mapping's FunctionResponseTypes [ReportBatchItemFailures] "
        "must match its function's REPORT_BATCH_ITEM_FAILURES environment variable."
    )
    source_url = "README.md"
    tags = ["resources", "lambda", "logpipe"]

    def match(self, cfn):
        matches = []
        resources = cfn.template.get("Resources", {})
        reporting_functions = set()
        for name, resource in resources.items():
            if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
                continue
            props = resource.get("Properties", {})
            if "Topics" not in props:  # not a Kafka mapping
                continue
            function = _function_id(props.get("FunctionName"))
            path = ["Resources", name, "Properties", "FunctionName"]
            if function is None or function not in resources:
                matches.append(RuleMatch(path, f"{name}: FunctionName must be !Ref to a function in this template"))
                continue
            reports = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
            if reports:
                reporting_functions.add(function)
            variables = (
                resources[function].get("Properties", {}).get("Environment", {}).get("Variables", {})
            )
            setting = variables.get("REPORT_BATCH_ITEM_FAILURES", "false")
            if not isinstance(setting, str):
                matches.append(RuleMatch(path, f"{function}: REPORT_BATCH_ITEM_FAILURES must be a literal \"true\" or \"false\""))
                continue
            enabled = setting.strip().lower() in ("true", "1")
            if reports and not enabled:
                matches.append(RuleMatch(
                    ["Resources", name, "Properties", "FunctionResponseTypes"],
                    f"{name} has ReportBatchItemFailures but {function} has REPORT_BATCH_ITEM_FAILURES={setting!r}: "
                    "set it to \"true\" (the function would error instead of reporting)",
                ))
            if enabled and not reports:
                matches.append(RuleMatch(
                    ["Resources", name, "Properties"],
                    f"{function} has REPORT_BATCH_ITEM_FAILURES=true but {name} lacks "
                    "FunctionResponseTypes: [ReportBatchItemFailures]: the mapping would ignore "
                    "the failure list and records would be lost",
                ))
        return matches
