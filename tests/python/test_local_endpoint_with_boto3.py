"""The local AWS endpoint (`asyncscale sim serve`) driven by a client we did not write: boto3.

botocore speaks AWS JSON 1.1 to Application Auto Scaling and Service Quotas and Smithy RPC v2
CBOR to CloudWatch (botocore >= 1.40 picks CBOR from the model's protocol list), so this checks
the endpoint's wire formats, error shapes and pagination independently of the Rust SDK.
"""

import os
import re
import subprocess
from pathlib import Path

import boto3
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
