"""The same boto3 calls against the local endpoint (`asyncscale sim serve`) and moto, for every call
moto implements that asyncscale's simulator serves: Application Auto Scaling's targets, policies
and scheduled actions, CloudWatch's alarms and their tags. Any difference fails, unless it is listed below as a
known moto deviation, with the source that says what AWS does. A listed deviation that disappears
fails too, so the list stays true.

Service Quotas is not compared: moto 5.2 answers NoSuchResourceException for SageMaker's quotas.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ASYNCSCALE_BIN", str(ROOT / "target" / "debug" / "asyncscale"))
DIM = "sagemaker:variant:DesiredInstanceCount"
BASE = dict(ServiceNamespace="sagemaker", ScalableDimension=DIM)
CUSTOM = {"MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker", "Statistic": "Average",
          "Dimensions": [{"Name": "EndpointName", "Value": "e"}]}
ALARM = dict(AlarmName="al", Namespace="AWS/SageMaker", MetricName="HasBacklogWithoutCapacity", Period=60,
             EvaluationPeriods=2, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold")
API = "https://docs.aws.amazon.com/autoscaling/application/APIReference"
CW_API = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference"


def rid(name):
    return f"endpoint/{name}/variant/AllTraffic"


# (name, service, operation, parameters): run in order against both; later ones see earlier state.
CALLS = [
    ("register", "aas", "register_scalable_target", dict(ResourceId=rid("a"), MinCapacity=0, MaxCapacity=4, **BASE)),
    ("describe target", "aas", "describe_scalable_targets", dict(ServiceNamespace="sagemaker", ResourceIds=[rid("a")])),
    ("namespace case", "aas", "register_scalable_target",
     dict(ServiceNamespace="SageMaker", ResourceId=rid("b"), ScalableDimension=DIM, MinCapacity=0, MaxCapacity=4)),
    ("dimension of another service", "aas", "register_scalable_target",
     dict(ServiceNamespace="sagemaker", ResourceId=rid("b"), ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=4)),
    ("dimension not in the enum", "aas", "register_scalable_target",
     dict(ServiceNamespace="sagemaker", ResourceId=rid("b"), ScalableDimension="bogus:x:y", MinCapacity=0, MaxCapacity=4)),
    ("min above max", "aas", "register_scalable_target", dict(ResourceId=rid("b"), MinCapacity=5, MaxCapacity=4, **BASE)),
    ("new target without min", "aas", "register_scalable_target", dict(ResourceId=rid("c"), MaxCapacity=4, **BASE)),
    ("describe with a bad namespace", "aas", "describe_scalable_targets", dict(ServiceNamespace="foo")),
    ("policy without PolicyType", "aas", "put_scaling_policy",
     dict(PolicyName="p", ResourceId=rid("a"), **BASE,
          StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})),
    ("target tracking", "aas", "put_scaling_policy",
     dict(PolicyName="tt", PolicyType="TargetTrackingScaling", ResourceId=rid("a"), **BASE,
          TargetTrackingScalingPolicyConfiguration={"TargetValue": 5.0, "CustomizedMetricSpecification": CUSTOM})),
    ("describe policies", "aas", "describe_scaling_policies", dict(ServiceNamespace="sagemaker", ResourceId=rid("a"))),
    ("scheduled action", "aas", "put_scheduled_action",
     dict(ScheduledActionName="prewarm", ResourceId=rid("a"), Schedule="cron(50 7 ? * MON-FRI *)", Timezone="Europe/Berlin",
          ScalableTargetAction={"MinCapacity": 1}, **BASE)),
    ("describe scheduled actions", "aas", "describe_scheduled_actions", dict(ServiceNamespace="sagemaker", ResourceId=rid("a"))),
    ("scheduled action updated without its schedule", "aas", "put_scheduled_action",
     dict(ScheduledActionName="prewarm", ResourceId=rid("a"), ScalableTargetAction={"MaxCapacity": 3}, **BASE)),
    ("describe the updated scheduled action", "aas", "describe_scheduled_actions",
     dict(ServiceNamespace="sagemaker", ScheduledActionNames=["prewarm"])),
    ("scheduled action with a malformed schedule", "aas", "put_scheduled_action",
     dict(ScheduledActionName="bad", ResourceId=rid("a"), Schedule="every day at 8", **BASE)),
    ("scheduled action on an unregistered target", "aas", "put_scheduled_action",
     dict(ScheduledActionName="x", ResourceId=rid("zz"), Schedule="rate(1 hour)", **BASE)),
    ("delete a missing scheduled action", "aas", "delete_scheduled_action", dict(ScheduledActionName="nope", ResourceId=rid("a"), **BASE)),
    ("both metric specifications", "aas", "put_scaling_policy",
     dict(PolicyName="tt2", PolicyType="TargetTrackingScaling", ResourceId=rid("a"), **BASE,
          TargetTrackingScalingPolicyConfiguration={"TargetValue": 5.0, "CustomizedMetricSpecification": CUSTOM,
                                                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})),
    ("statistic not in the enum", "aas", "put_scaling_policy",
     dict(PolicyName="tt3", PolicyType="TargetTrackingScaling", ResourceId=rid("a"), **BASE,
          TargetTrackingScalingPolicyConfiguration={"TargetValue": 5.0, "CustomizedMetricSpecification": dict(CUSTOM, Statistic="Avg")})),
    ("predefined metric of another service", "aas", "put_scaling_policy",
     dict(PolicyName="tt4", PolicyType="TargetTrackingScaling", ResourceId=rid("a"), **BASE,
          TargetTrackingScalingPolicyConfiguration={"TargetValue": 5.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})),
    ("aggregation not in the enum", "aas", "put_scaling_policy",
     dict(PolicyName="s1", PolicyType="StepScaling", ResourceId=rid("a"), **BASE,
          StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Median",
                                          "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})),
    ("positive upper bound without an open step", "aas", "put_scaling_policy",
     dict(PolicyName="s2", PolicyType="StepScaling", ResourceId=rid("a"), **BASE,
          StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity",
                                          "StepAdjustments": [{"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 10, "ScalingAdjustment": 1}]})),
    ("policy on an unregistered target", "aas", "put_scaling_policy",
     dict(PolicyName="x", PolicyType="TargetTrackingScaling", ResourceId=rid("zz"), **BASE,
          TargetTrackingScalingPolicyConfiguration={"TargetValue": 5.0, "CustomizedMetricSpecification": CUSTOM})),
    ("policies page too large", "aas", "describe_scaling_policies", dict(ServiceNamespace="sagemaker", MaxResults=11)),
    ("delete a missing policy", "aas", "delete_scaling_policy", dict(PolicyName="nope", ResourceId=rid("a"), **BASE)),
    ("deregister", "aas", "deregister_scalable_target", dict(ResourceId=rid("a"), **BASE)),
    ("deregister again", "aas", "deregister_scalable_target", dict(ResourceId=rid("a"), **BASE)),
    ("scheduled actions after deregistering", "aas", "describe_scheduled_actions", dict(ServiceNamespace="sagemaker", ResourceId=rid("a"))),
    ("alarm", "cw", "put_metric_alarm", dict(ALARM, Statistic="Average")),
    ("describe alarm", "cw", "describe_alarms", dict(AlarmNames=["al"])),
    ("alarm without a statistic", "cw", "put_metric_alarm", dict(ALARM)),
    ("alarm with both statistics", "cw", "put_metric_alarm", dict(ALARM, Statistic="Average", ExtendedStatistic="p90")),
    ("alarm statistic not in the enum", "cw", "put_metric_alarm", dict(ALARM, Statistic="Avg")),
    ("alarm unit not in the enum", "cw", "put_metric_alarm", dict(ALARM, Statistic="Average", Unit="Parsecs")),
    ("alarm with 31 dimensions", "cw", "put_metric_alarm",
     dict(ALARM, Statistic="Average", Dimensions=[{"Name": f"d{i}", "Value": "v"} for i in range(31)])),
    ("alarm description over 1024", "cw", "put_metric_alarm", dict(ALARM, Statistic="Average", AlarmDescription="x" * 1025)),
    ("alarm action that is not an ARN", "cw", "put_metric_alarm", dict(ALARM, Statistic="Average", AlarmActions=["not-an-arn"])),
    ("describe by a bad state", "cw", "describe_alarms", dict(StateValue="BAD")),
    ("describe by a bad alarm type", "cw", "describe_alarms", dict(AlarmTypes=["Bad"])),
    ("alarm page too large", "cw", "describe_alarms", dict(MaxRecords=101)),
    ("51 tags", "cw", "tag_resource", dict(ResourceARN="ARN", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])),
    ("tag", "cw", "tag_resource", dict(ResourceARN="ARN", Tags=[{"Key": "team", "Value": "ml"}])),
    ("untag", "cw", "untag_resource", dict(ResourceARN="ARN", TagKeys=["team"])),
    ("list tags", "cw", "list_tags_for_resource", dict(ResourceARN="ARN")),
    ("delete a missing alarm", "cw", "delete_alarms", dict(AlarmNames=["nope"])),
]

# Where moto differs from AWS, and the source that says what AWS does (the local endpoint follows it).
KNOWN_MOTO_DEVIATIONS = {
    "min above max": f"{API}/API_RegisterScalableTarget.html: MinCapacity is the lower bound of MaxCapacity; AWS answers ValidationException",
    "new target without min": f"{API}/API_RegisterScalableTarget.html: 'This property is required when registering a new scalable target'",
    "both metric specifications": f"{API}/API_TargetTrackingScalingPolicyConfiguration.html: a predefined or a customized metric, not both",
    "statistic not in the enum": f"{API}/API_CustomizedMetricSpecification.html: Statistic is an enum",
    "predefined metric of another service": f"{API}/API_PredefinedMetricSpecification.html: each metric type names the service it is for",
    "aggregation not in the enum": f"{API}/API_StepScalingPolicyConfiguration.html: MetricAggregationType is Average, Minimum or Maximum",
    "positive upper bound without an open step": "docs/aws-behaviour.md §3: 'at most one null upper bound (required if any upper bound is positive)'",
    "policy on an unregistered target": f"{API}/API_PutScalingPolicy.html: ObjectNotFoundException when the target does not exist",
    "policies page too large": f"{API}/API_DescribeScalingPolicies.html: MaxResults 1-10",
    "scheduled action with a malformed schedule": f"{API}/API_PutScheduledAction.html: Schedule supports at(...), rate(...) and cron(...) expressions",
    "scheduled action on an unregistered target": f"{API}/API_PutScheduledAction.html: 'You cannot create a scheduled action until you have registered the resource as a scalable target'",
    "delete a missing scheduled action": f"{API}/API_DeleteScheduledAction.html: ObjectNotFoundException 'The specified object could not be found'",
    "scheduled actions after deregistering": f"{API}/API_PutScheduledAction.html: 'If a scalable target is deregistered ... Any scheduled actions that were specified for the scalable target are deleted'",
    "delete a missing policy": f"{API}/API_DeleteScalingPolicy.html: ObjectNotFoundException 'if the resource cannot be found'",
    "deregister again": f"{API}/API_DeregisterScalableTarget.html: ObjectNotFoundException 'if the resource cannot be found'",
    "alarm without a statistic": f"{CW_API}/API_PutMetricAlarm.html: 'you must specify either Statistic or ExtendedStatistic'",
    "alarm with both statistics": f"{CW_API}/API_PutMetricAlarm.html: 'you must specify either Statistic or ExtendedStatistic, but not both'",
    "alarm statistic not in the enum": f"{CW_API}/API_PutMetricAlarm.html: Statistic is an enum",
    "alarm unit not in the enum": f"{CW_API}/API_PutMetricAlarm.html: Unit is an enum",
    "alarm with 31 dimensions": f"{CW_API}/API_PutMetricAlarm.html: 'Maximum number of 30 items'",
    "alarm description over 1024": f"{CW_API}/API_PutMetricAlarm.html: AlarmDescription 'Maximum length of 1024'",
    "alarm action that is not an ARN": f"{CW_API}/API_PutMetricAlarm.html: actions are ARNs",
    "describe by a bad state": f"{CW_API}/API_DescribeAlarms.html: StateValue is an enum",
    "describe by a bad alarm type": f"{CW_API}/API_DescribeAlarms.html: AlarmTypes is a list of an enum",
    "alarm page too large": f"{CW_API}/API_DescribeAlarms.html: MaxRecords 1-100",
    "51 tags": f"{CW_API}/API_TagResource.html: 'You can associate as many as 50 tags with a CloudWatch resource'",
    "list tags": "follows from '51 tags': moto kept the 51 tags it should have refused",
    "delete a missing alarm": "docs/aws-behaviour.md §4.3: DeleteAlarms answers ResourceNotFound (HTTP 404) for names that do not exist",
    "describe alarm": f"{CW_API}/API_PutMetricAlarm.html: 'When this operation creates an alarm, the alarm state is immediately set to INSUFFICIENT_DATA' (moto: OK)",
}

# Fields compared in successful answers (the rest holds ARNs, ids and times each server makes up).
COMPARED = {
    "describe_scalable_targets": ("ScalableTargets", ["ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity"]),
    "describe_scheduled_actions": ("ScheduledActions", ["ScheduledActionName", "ResourceId", "Schedule", "Timezone", "ScalableTargetAction"]),
    "describe_scaling_policies": ("ScalingPolicies", ["PolicyName", "PolicyType", "ResourceId", "TargetTrackingScalingPolicyConfiguration"]),
    "describe_alarms": ("MetricAlarms", ["AlarmName", "Namespace", "MetricName", "Statistic", "Period", "EvaluationPeriods",
                                         "Threshold", "ComparisonOperator", "StateValue"]),
    "list_tags_for_resource": ("Tags", ["Key", "Value"]),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def endpoints():
    moto = shutil.which("moto_server")
    if moto is None:
        if os.environ.get("ASYNCSCALE_REQUIRE_MOTO"):
            pytest.fail("moto_server is required (pip install 'moto[server]')")
        pytest.skip("moto_server not installed")
    port = free_port()
    moto_proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim = subprocess.Popen([BIN, "sim", "serve", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    sim_url = re.search(r"http://\S+", sim.stderr.readline()).group(0)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "moto_server did not start"
            time.sleep(0.2)
    yield {"local endpoint": sim_url, "moto": f"http://127.0.0.1:{port}"}
    for proc in (moto_proc, sim):
        proc.terminate()
        proc.wait(timeout=10)


def outcome(client, operation, params):
    try:
        answer = getattr(client, operation)(**params)
    except botocore.exceptions.ClientError as e:
        return ("error", e.response["Error"]["Code"])
    if operation in COMPARED:
        key, fields = COMPARED[operation]
        return ("ok", [{f: item.get(f) for f in fields} for item in answer.get(key, [])])
    return ("ok", None)


def test_the_local_endpoint_answers_like_aws_where_moto_does_and_the_differences_are_known(endpoints):
    config = botocore.config.Config(retries={"max_attempts": 1})
    clients = {
        name: {
            svc: boto3.client(full, endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDTEST",
                              aws_secret_access_key="secret", config=config)
            for svc, full in (("aas", "application-autoscaling"), ("cw", "cloudwatch"))
        }
        for name, url in endpoints.items()
    }
    unexplained, vanished = [], []
    for name, service, operation, params in CALLS:
        results = {}
        for server, c in clients.items():
            call = dict(params)
            if call.get("ResourceARN") == "ARN":
                call["ResourceARN"] = c["cw"].describe_alarms(AlarmNames=["al"])["MetricAlarms"][0]["AlarmArn"]
            results[server] = outcome(c[service], operation, call)
        differ = results["local endpoint"] != results["moto"]
        if differ and name not in KNOWN_MOTO_DEVIATIONS:
            unexplained.append(f"{name}: {results}")
        if not differ and name in KNOWN_MOTO_DEVIATIONS:
            vanished.append(name)
    assert not unexplained, "differences not explained as moto deviations:\n" + "\n".join(unexplained)
    assert not vanished, f"listed as moto deviations but now equal (remove them): {vanished}"


def test_sts_assume_role_and_caller_identity_answer_like_moto(endpoints):
    """AssumeRole and GetCallerIdentity (awsQuery, XML) through boto3 against both: the same
    shape, a session in the role's account, and GetCallerIdentity with the session's keys naming
    the assumed role (STS API reference, AssumeRole and GetCallerIdentity)."""
    role = "arn:aws:iam::222222222222:role/ml/asyncscale-team-b"
    seen = {}
    for server, url in endpoints.items():
        sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDTEST",
                           aws_secret_access_key="secret")
        started = time.time()
        answer = sts.assume_role(RoleArn=role, RoleSessionName="asyncscale", ExternalId="team-b", DurationSeconds=900)
        creds = answer["Credentials"]
        assert sorted(creds) == ["AccessKeyId", "Expiration", "SecretAccessKey", "SessionToken"], server
        assert creds["AccessKeyId"].startswith("ASIA"), server
        assert abs(creds["Expiration"].timestamp() - (started + 900)) < 60, (server, creds["Expiration"])
        arn = answer["AssumedRoleUser"]["Arn"]
        as_role = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                               aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        me = as_role.get_caller_identity()
        seen[server] = (arn, me["Account"], me["Arn"])
    assert seen["local endpoint"] == seen["moto"], seen
    assert seen["moto"] == (
        "arn:aws:sts::222222222222:assumed-role/asyncscale-team-b/asyncscale",
        "222222222222",
        "arn:aws:sts::222222222222:assumed-role/asyncscale-team-b/asyncscale",
    )
