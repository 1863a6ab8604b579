"""The local AWS endpoint (`asyncscale sim serve`) driven by a client we did not write: boto3.

botocore speaks AWS JSON 1.1 to Application Auto Scaling and Service Quotas and Smithy RPC v2
CBOR to CloudWatch (botocore >= 1.40 picks CBOR from the model's protocol list), so this checks
the endpoint's wire formats, error shapes and pagination independently of the Rust SDK.
"""

import concurrent.futures
import os
import re
import subprocess
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ASYNCSCALE_BIN", str(ROOT / "target" / "debug" / "asyncscale"))
RID = "endpoint/sdxl-async/variant/AllTraffic"
DIM = "sagemaker:variant:DesiredInstanceCount"


@pytest.fixture()
def endpoint():
    proc = subprocess.Popen(
        [BIN, "sim", "serve", "--listen", "127.0.0.1:0", "--quota", "ml.g4dn.xlarge=4", "--default-quota", "ml.g5.xlarge=2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    url = re.search(r"http://\S+", line).group(0)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def client(service, url):
    return boto3.client(
        service, endpoint_url=url, region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"
    )


def test_application_auto_scaling(endpoint):
    aas = client("application-autoscaling", endpoint)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        aas.put_scaling_policy(
            PolicyName="p", ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, PolicyType="StepScaling",
            StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]},
        )
    assert err.value.response["Error"]["Code"] == "ObjectNotFoundException"

    with pytest.raises(botocore.exceptions.ClientError) as err:
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, MinCapacity=5, MaxCapacity=2)
    assert err.value.response["Error"]["Code"] == "ValidationException"

    arn = aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, MinCapacity=0, MaxCapacity=4, Tags={"team": "ml"}
    )["ScalableTargetARN"]
    assert arn.startswith("arn:aws:application-autoscaling:eu-west-1:")
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[RID])["ScalableTargets"][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 4)
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"team": "ml"}

    tt = aas.put_scaling_policy(
        PolicyName="tt", ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": "sdxl-async"}], "Statistic": "Average",
            },
        },
    )
    names = sorted(a["AlarmName"] for a in tt["Alarms"])
    assert len(names) == 2 and "-AlarmHigh-" in names[0] and "-AlarmLow-" in names[1]
    for i in range(12):
        aas.put_scaling_policy(
            PolicyName=f"step-{i:02}", ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, PolicyType="StepScaling",
            StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]},
        )
    pages = list(aas.get_paginator("describe_scaling_policies").paginate(ServiceNamespace="sagemaker", ResourceId=RID))
    assert [len(p["ScalingPolicies"]) for p in pages] == [10, 3]

    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM)
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=RID)["ScalingPolicies"] == []
    # Deregistering deleted the target-tracking policy, and with it the alarms AWS made for it.
    cw = client("cloudwatch", endpoint)
    assert cw.describe_alarms(AlarmNames=names)["MetricAlarms"] == []


def test_cloudwatch_over_cbor(endpoint):
    cw = client("cloudwatch", endpoint)
    cw.put_metric_alarm(
        AlarmName="backlog", Namespace="AWS/SageMaker", MetricName="HasBacklogWithoutCapacity",
        Dimensions=[{"Name": "EndpointName", "Value": "sdxl-async"}], Statistic="Average", Period=60, EvaluationPeriods=2,
        DatapointsToAlarm=2, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
        AlarmActions=["arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x"], Tags=[{"Key": "owner", "Value": "ml/sdxl"}],
    )
    alarm = cw.describe_alarms(AlarmNames=["backlog"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["Threshold"] == 1.0 and alarm["Period"] == 60 and alarm["DatapointsToAlarm"] == 2
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:backlog"
    assert alarm["StateUpdatedTimestamp"].year >= 2025  # a CBOR timestamp (tag 1) decoded to a datetime
    assert cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"] == [{"Key": "owner", "Value": "ml/sdxl"}]

    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.put_metric_alarm(
            AlarmName="bad", Namespace="AWS/SageMaker", MetricName="HasBacklogWithoutCapacity", Statistic="Average",
            Period=45, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"

    cw.delete_alarms(AlarmNames=["backlog"])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.delete_alarms(AlarmNames=["backlog"])
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"


def test_service_quotas(endpoint):
    sq = client("service-quotas", endpoint)
    quota = sq.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-B67CFA0C")["Quota"]
    assert (quota["QuotaName"], quota["Value"]) == ("ml.g4dn.xlarge for endpoint usage", 4.0)
    with pytest.raises(sq.exceptions.NoSuchResourceException):
        sq.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-1928E07B")
    assert sq.get_aws_default_service_quota(ServiceCode="sagemaker", QuotaCode="L-1928E07B")["Quota"]["Value"] == 2.0
    # Hundreds of quotas, as a real account has: every client must follow NextToken.
    pages = list(sq.get_paginator("list_aws_default_service_quotas").paginate(ServiceCode="sagemaker"))
    names = [q["QuotaName"] for p in pages for q in p["Quotas"]]
    assert len(pages) > 5 and len(names) > 500 and len(set(names)) == len(names)
    assert "ml.g5.xlarge for endpoint usage" in names and "ml.p4d.24xlarge for training job usage" in names
    only = sq.list_service_quotas(ServiceCode="sagemaker", QuotaCode="L-B67CFA0C")["Quotas"]
    assert [q["QuotaName"] for q in only] == ["ml.g4dn.xlarge for endpoint usage"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sq.get_service_quota(ServiceCode="sagemaker", QuotaCode="1-not-a-code")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_cloudwatch_metric_math_and_anomaly_alarms_and_tag_arns(endpoint):
    cw = client("cloudwatch", endpoint)
    stat = {"Metric": {"MetricName": "ApproximateBacklogSize", "Namespace": "AWS/SageMaker"}, "Period": 60, "Stat": "Average"}
    # A metric-math alarm: the period lives in each MetricStat, not at the top (PutMetricAlarm, Metrics).
    cw.put_metric_alarm(
        AlarmName="math", EvaluationPeriods=2, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
        Metrics=[{"Id": "m1", "MetricStat": stat, "ReturnData": False}, {"Id": "e1", "Expression": "m1*2", "ReturnData": True}],
    )
    # An anomaly-detection alarm: a band (ThresholdMetricId) and a band operator, no Threshold.
    cw.put_metric_alarm(
        AlarmName="band", EvaluationPeriods=2, ComparisonOperator="GreaterThanUpperThreshold", ThresholdMetricId="ad1",
        Metrics=[{"Id": "m1", "MetricStat": stat, "ReturnData": True}, {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)"}],
    )
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert alarms["band"]["ThresholdMetricId"] == "ad1" and alarms["math"]["Metrics"][1]["Expression"] == "m1*2"
    assert cw.describe_alarms(AlarmTypes=["CompositeAlarm"])["MetricAlarms"] == []
    assert len(cw.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])["MetricAlarms"]) == 2

    for bad in [dict(ExtendedStatistic="p100.5"), dict(Statistic="Average", Threshold=None)]:
        args = dict(AlarmName="bad", Namespace="n", MetricName="x", Period=60, EvaluationPeriods=1, Threshold=1.0,
                    ComparisonOperator="GreaterThanThreshold")
        args.update(bad)
        args = {k: v for k, v in args.items() if v is not None}
        with pytest.raises(botocore.exceptions.ClientError) as err:
            cw.put_metric_alarm(**args)
        assert err.value.response["Error"]["Code"] == "InvalidParameterValue", bad

    arn = alarms["math"]["AlarmArn"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.tag_resource(ResourceARN="garbage", Tags=[{"Key": "k", "Value": "v"}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    other_region = arn.replace(":eu-west-1:", ":us-east-1:")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.tag_resource(ResourceARN=other_region, Tags=[{"Key": "k", "Value": "v"}])
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.untag_resource(ResourceARN=arn, TagKeys=["k" * 129])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    cw.tag_resource(ResourceARN=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        cw.tag_resource(ResourceARN=arn, Tags=[{"Key": "aws:x", "Value": "v"}])
    assert "reserved" in err.value.response["Error"]["Message"]

    aas = client("application-autoscaling", endpoint)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        aas.tag_resource(ResourceARN="garbage", Tags={"k": "v"})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    sq = client("service-quotas", endpoint)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sq.list_service_quotas(ServiceCode="sagemaker", QuotaAppliedAtLevel="account")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_rate_limits_answer_each_services_throttling_error():
    proc = subprocess.Popen(
        [BIN, "sim", "serve", "--listen", "127.0.0.1:0", "--rate-limits", "aws",
         "--rate-limit", "application-autoscaling:*=1/1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        while url is None:
            line = proc.stderr.readline()
            assert line, "sim serve exited"
            found = re.search(r"http://\S+", line)
            url = found and found.group(0)
        no_retries = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})

        def raw(service):
            return boto3.client(service, endpoint_url=url, region_name="eu-west-1", aws_access_key_id="AKIDTEST",
                                aws_secret_access_key="secret", config=no_retries)

        codes = {}
        for service, call in [
            ("cloudwatch", lambda c: c.delete_alarms(AlarmNames=["none"])),
            ("application-autoscaling", lambda c: c.describe_scalable_targets(ServiceNamespace="sagemaker")),
            ("service-quotas", lambda c: c.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-B67CFA0C")),
        ]:
            c = raw(service)

            def one(_):
                try:
                    call(c)
                except botocore.exceptions.ClientError as e:
                    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
                return "ok", 200

            # Twenty at once: far past any bucket, however slow the machine.
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(one, range(20)))
            throttled = {a for a in answers if a[0] in ("Throttling", "ThrottlingException", "TooManyRequestsException")}
            assert len(throttled) == 1, answers
            code, status = throttled.pop()
            assert status == 400
            codes[service] = code
        assert codes == {
            "cloudwatch": "Throttling",
            "application-autoscaling": "ThrottlingException",
            "service-quotas": "TooManyRequestsException",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_application_auto_scaling_tag_and_name_limits(endpoint):
    aas = client("application-autoscaling", endpoint)

    def refused(code, call, **kwargs):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call(**kwargs)
        assert err.value.response["Error"]["Code"] == code, err.value.response

    target = dict(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, MinCapacity=0, MaxCapacity=4)
    # RegisterScalableTarget's errors have no TooManyTagsException (API reference): a validation error.
    refused("ValidationException", aas.register_scalable_target, Tags={f"k{i}": "v" for i in range(51)}, **target)
    refused("ValidationException", aas.register_scalable_target, Tags={"aws:x": "v"}, **target)
    refused("ValidationException", aas.register_scalable_target, Tags={"k" * 129: "v"}, **target)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == [], "nothing half-written"

    arn = aas.register_scalable_target(Tags={f"k{i}": "v" for i in range(49)}, **target)["ScalableTargetARN"]
    # Past 50 in all: refused whole, and the tags already there are all that stays.
    refused("TooManyTagsException", aas.tag_resource, ResourceARN=arn, Tags={"a": "1", "b": "2"})
    assert len(aas.list_tags_for_resource(ResourceARN=arn)["Tags"]) == 49
    refused("ValidationException", aas.tag_resource, ResourceARN=arn, Tags={"aws:x": "v"})

    step = {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}
    policy = dict(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, PolicyType="StepScaling",
                  StepScalingPolicyConfiguration=step)
    refused("ValidationException", aas.put_scaling_policy, PolicyName="x" * 257, **policy)
    # PolicyName is \p{Print}+ (API reference): a control character is refused.
    refused("ValidationException", aas.put_scaling_policy, PolicyName="bad\nname", **policy)


def admin(url, path, body):
    import json
    import urllib.request

    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        return response.read()


def test_sagemaker_endpoint_reads(endpoint):
    """DescribeEndpoint, DescribeEndpointConfig and ListEndpoints, answered from the scaling
    model's endpoints: instance counts follow what Application Auto Scaling sets."""
    admin(endpoint, "/_sim/endpoints", {"endpoint": "sdxl-async", "instanceType": "ml.g4dn.xlarge", "instances": 1})
    admin(endpoint, "/_sim/endpoints", {"endpoint": "Sync-Endpoint", "instanceType": "ml.g5.xlarge", "instances": 1, "asynchronous": False})
    sm = boto3.client(
        "sagemaker", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"
    )
    described = sm.describe_endpoint(EndpointName="sdxl-async")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sdxl-async"
    variant = described["ProductionVariants"][0]
    assert (variant["VariantName"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == ("AllTraffic", 1, 1)
    assert "AsyncInferenceConfig" in described
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"
    assert "AsyncInferenceConfig" in config

    sync = sm.describe_endpoint(EndpointName="Sync-Endpoint")
    assert "AsyncInferenceConfig" not in sync
    assert sync["EndpointArn"].endswith(":endpoint/sync-endpoint"), "AWS lowercases the name in the ARN"
    assert "AsyncInferenceConfig" not in sm.describe_endpoint_config(EndpointConfigName=sync["EndpointConfigName"])

    with pytest.raises(botocore.exceptions.ClientError) as err:
        sm.describe_endpoint(EndpointName="Missing")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == 'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/missing".'
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sm.describe_endpoint_config(EndpointConfigName="missing-config")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    elsewhere = boto3.client(
        "sagemaker", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"
    )
    with pytest.raises(botocore.exceptions.ClientError):
        elsewhere.describe_endpoint(EndpointName="sdxl-async")

    pages = list(sm.get_paginator("list_endpoints").paginate(SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 1}))
    assert [[e["EndpointName"] for e in p["Endpoints"]] for p in pages] == [["Sync-Endpoint"], ["sdxl-async"]]
    assert [e["EndpointName"] for e in sm.list_endpoints(NameContains="sdxl")["Endpoints"]] == ["sdxl-async"]

    # A new minimum moves the desired count at once; the instance serves after provisioning.
    aas = boto3.client(
        "application-autoscaling", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"
    )
    aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, MinCapacity=2, MaxCapacity=4)
    updating = sm.describe_endpoint(EndpointName="sdxl-async")
    variant = updating["ProductionVariants"][0]
    assert (updating["EndpointStatus"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == ("Updating", 1, 2)
    assert [e["EndpointName"] for e in sm.list_endpoints(StatusEquals="Updating")["Endpoints"]] == ["sdxl-async"]
    admin(endpoint, "/_sim/advance", {"seconds": 600})
    served = sm.describe_endpoint(EndpointName="sdxl-async")
    assert (served["EndpointStatus"], served["ProductionVariants"][0]["CurrentInstanceCount"]) == ("InService", 2)
    assert served["LastModifiedTime"] > described["LastModifiedTime"]


def test_a_role_session_acts_in_the_roles_account(endpoint):
    """Keys from STS AssumeRole reach the role's simulated account; the caller's own keys do not."""
    import json
    import urllib.request

    sts = client("sts", endpoint)
    creds = sts.assume_role(RoleArn="arn:aws:iam::222222222222:role/asyncscale", RoleSessionName="asyncscale")["Credentials"]
    as_role = boto3.client(
        "application-autoscaling", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"],
    )
    as_role.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM, MinCapacity=0, MaxCapacity=2)

    def targets(account):
        with urllib.request.urlopen(f"{endpoint}/_sim/state?region=eu-west-1&account={account}") as response:
            return json.load(response)["ScalableTargets"]

    assert [t["MaxCapacity"] for t in targets("222222222222")] == [2]
    assert targets("123456789012") == []
    assert client("application-autoscaling", endpoint).describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sts.assume_role(RoleArn="arn:aws:iam::222222222222:role/asyncscale", RoleSessionName="has space")
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_admin_routes_refuse_nonsense_naming_the_field(endpoint):
    """The soak's admin routes: a log cursor that does not parse is refused (read as 0 it would
    hand back the whole log as new), a hold's length is checked with its field named, and a
    hold ends when holdSeconds says, whatever holdUntil the request carries."""
    import json
    import time
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(endpoint + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    aas = client("application-autoscaling", endpoint)
    aas.describe_scalable_targets(ServiceNamespace="sagemaker")
    for query, field in (("since=abc", "since"), ("since=-1", "since"), ("limit=x", "limit")):
        status, text = call("GET", f"/_sim/log?{query}")
        assert status == 400 and field in text, (query, text)
    status, text = call("GET", "/_sim/log?since=999999")
    assert status == 200 and json.loads(text)["entries"] == []
    assert len(json.loads(call("GET", "/_sim/log?since=0")[1])["entries"]) == 1

    status, text = call("POST", "/_sim/faults", {"operation": "DescribeAlarms", "holdSeconds": -5})
    assert status == 400 and "holdSeconds is -5" in text
    status, text = call("POST", "/_sim/faults", {"operation": "DescribeAlarms", "code": "Throttling", "delaySeconds": 4000})
    assert status == 400 and "delaySeconds is 4000" in text
    status, _ = call("POST", "/_sim/faults", {"operation": "DescribeAlarms", "holdSeconds": 1, "holdUntil": 9e15})
    assert status == 204
    faults = json.loads(call("GET", "/_sim/faults")[1])
    assert faults[0]["holdUntil"] < time.time() + 5

    assert call("DELETE", "/_sim/endpoints")[0] == 400
    assert call("DELETE", "/_sim/endpoints?endpoint=nope")[0] == 404
