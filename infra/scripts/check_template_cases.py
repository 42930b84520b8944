"""The self-test of check_template.py (`check_template.py --self-test`): a good template
that must produce no problem, and broken ones that must each produce their message."""
from __future__ import annotations

import sys

from check_template import check_text

_GOOD = """
Globals:
  Function: {Runtime: provided.al2023, Architectures: [arm64], Tracing: Active}
Parameters:
  Vis: {Type: Number, Default: 180}
  T: {Type: Number, Default: 60, AllowedValues: [30, 60]}
  B: {Type: Number, Default: 5, MinValue: 1, MaxValue: 10}
  Stage: {Type: String}
  MetricsNamespace: {Type: String, Default: JiraRelay}
  Rate: {Type: String, Default: rate(15 minutes), AllowedPattern: '^rate.*$'}
Mappings:
  Vis: {'30': {V: 180}, '60': {V: 360}}
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "x-${AWS::StackName}.fifo"
      FifoQueue: true
      VisibilityTimeout: !Ref Vis
      RedrivePolicy: {deadLetterTargetArn: !GetAtt D.Arn, maxReceiveCount: 5}
  D: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
  W:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: worker}}
    Properties:
      Timeout: 30
      Role: !GetAtt R.Arn
      Environment: {Variables: {RELAY_LINKS_TABLE: !Ref T}}
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Q.Arn, BatchSize: 10, FunctionResponseTypes: [ReportBatchItemFailures]}
  WL: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: !Sub "/aws/lambda/${W}", RetentionInDays: 7}}
  Q2:
    Type: AWS::SQS::Queue
    Properties: {QueueName: q2.fifo, FifoQueue: true, VisibilityTimeout: !FindInMap [Vis, !Ref T, V]}
  W2:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "w2-${Stage}"
      Timeout: !Ref T
      Role: !GetAtt R.Arn
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Q2.Arn, BatchSize: !Ref B, FunctionResponseTypes: [ReportBatchItemFailures]}
  W2L: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: !Sub "/aws/lambda/w2-${Stage}", RetentionInDays: 30}}
  Sweep:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sweep
      ReservedConcurrentExecutions: 1
      Role: !GetAtt R.Arn
      Events:
        S: {Type: Schedule, Properties: {Schedule: !Ref Rate}}
        T: {Type: Schedule, Properties: {Schedule: 'cron(0/15 * * * ? *)'}}
  SweepL: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /aws/lambda/sweep, RetentionInDays: 7}}
  R:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - {Effect: Allow, Action: [xray:PutTraceSegments, xray:PutTelemetryRecords], Resource: '*'}
              - {Effect: Allow, Action: sqs:SendMessage, Resource: !GetAtt D.Arn}
              - {Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: [!Ref S]}
              - Effect: Allow
                Action: [ssm:GetParameter, ssm:PutParameter]
                Resource: !Sub "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/app/${Stage}/wm/*"
              - !If [C, {Effect: Allow, Action: secretsmanager:PutSecretValue, Resource: !Ref S}, !Ref AWS::NoValue]
              - Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:DeleteItem, dynamodb:Query]
                Resource: !GetAtt T.Arn
  S: {Type: AWS::SecretsManager::Secret, Properties: {SecretString: '{}'}}
  T:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}, {AttributeName: sk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: sk, KeyType: RANGE}]
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
      SSESpecification: {SSEEnabled: true}
  A:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: !Ref MetricsNamespace
      MetricName: DeadLettered
      Dimensions: [{Name: Stage, Value: !Ref Stage}]
      TreatMissingData: notBreaching
      AlarmActions: [!Ref AWS::NoValue]
  Dash:
    Type: AWS::CloudWatch::Dashboard
    Properties:
      DashboardBody: !Sub '{"widgets": [{"type": "metric", "properties": {"metrics": [
        ["${MetricsNamespace}", "Applied", "Stage", "${Stage}"],
        [".", "Rejected", ".", ".", "Reason", "${!Literal}", {"stat": "Sum"}],
        ["AWS/SQS", "Whatever", "QueueName", "${Q.QueueName}"]]}}]}'
"""

_BAD = [
    ("Runtime is 'provided.al2'", "Resources: {F: {Type: AWS::Serverless::Function, "
                                  "Properties: {Runtime: provided.al2, Architectures: [arm64]}}}"),
    ("Architectures is absent", "Resources: {F: {Type: AWS::Lambda::Function, Properties: {Runtime: provided.al2023}}}"),
    ("must end in '.fifo'", "Resources: {Q: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true, QueueName: q}}}"),
    ("ends in '.fifo' but FifoQueue", "Resources: {Q: {Type: AWS::SQS::Queue, Properties: {QueueName: q.fifo}}}"),
    ("its dead-letter queue D is standard", _GOOD.replace("Properties: {FifoQueue: true}}", "Properties: {}}")),
    ("FunctionResponseTypes is ['ReportBatchItemFailure']",
     _GOOD.replace("[ReportBatchItemFailures]", "[ReportBatchItemFailure]")),
    ("SQS event source without FunctionResponseTypes",
     _GOOD.replace(", FunctionResponseTypes: [ReportBatchItemFailures]", "")),
    ("BatchSize 11 is out of range for a FIFO queue", _GOOD.replace("BatchSize: 10", "BatchSize: 11")),
    ("BatchSize 0 is out of range", _GOOD.replace("BatchSize: 10", "BatchSize: 0")),
    ("VisibilityTimeout 179s is below 6 x W Timeout (30s)", _GOOD.replace("Default: 180", "Default: 179")),
    ("VisibilityTimeout 30s is below", _GOOD.replace("VisibilityTimeout: !Ref Vis", "FifoThroughputLimit: perQueue")),
    ("FunctionResponseTypes is ['Bogus']",
     "Resources: {M: {Type: AWS::Lambda::EventSourceMapping, Properties: {FunctionName: f, "
     "EventSourceArn: 'arn:aws:kinesis:us-east-1:1:stream/s', FunctionResponseTypes: [Bogus]}}}"),
    # every allowed value of a parameter counts, through a mapping too
    ("VisibilityTimeout 359s is below 6 x W2 Timeout (60s) + batching window (0s) = 360s when T=60",
     _GOOD.replace("'60': {V: 360}", "'60': {V: 359}")),
    ("Timeout of W2 or VisibilityTimeout of Q2 cannot be read when T=120",
     _GOOD.replace("AllowedValues: [30, 60]", "AllowedValues: [30, 60, 120]")),
    ("BatchSize 11 is out of range for a FIFO queue (1..10) when B=11", _GOOD.replace("MaxValue: 10", "MaxValue: 11")),
    # tracing and log groups
    ("W: Tracing is None", _GOOD.replace(", Tracing: Active", "")),
    ("W2: has no log group", _GOOD.replace('"/aws/lambda/w2-${Stage}"', '"/aws/lambda/w3-${Stage}"')),
    ("W: has no log group", _GOOD.replace('"/aws/lambda/${W}"', '"/aws/lambda/${W2}"')),
    ("WL: log group of W has no RetentionInDays", _GOOD.replace("RetentionInDays: 7", "LogGroupClass: STANDARD")),
    # IAM
    ("W.Events.Q: SQS event on a function without its own Role", _GOOD.replace("      Role: !GetAtt R.Arn\n", "", 1)),
    ("Resource '*' for ['sqs:SendMessage']", _GOOD.replace("Resource: !GetAtt D.Arn", "Resource: '*'")),
    ("wildcard action 'sqs:*'", _GOOD.replace("Action: sqs:SendMessage", "Action: 'sqs:*'")),
    ("wildcard action 'secretsmanager:Get*'",
     _GOOD.replace("Action: secretsmanager:GetSecretValue", "Action: 'secretsmanager:Get*'")),
    ("wildcard action '*'", _GOOD.replace("Action: sqs:SendMessage", "Action: '*'")),
    ("Resource '*' for ['secretsmanager:PutSecretValue']",
     _GOOD.replace("Action: secretsmanager:PutSecretValue, Resource: !Ref S", "Action: secretsmanager:PutSecretValue, Resource: '*'")),
    ("NotAction/NotResource", _GOOD.replace("Action: sqs:SendMessage", "NotAction: sqs:DeleteQueue")),
    ("Resource '*' for ['sqs:SendMessage']",
     "Resources: {F: {Type: AWS::Serverless::Function, Properties: {Policies: "
     "[{Statement: [{Effect: Allow, Action: sqs:SendMessage, Resource: '*'}]}]}}}"),
    # SSM and schedules
    ("wildcard action 'ssm:Put*'", _GOOD.replace("ssm:PutParameter]", "'ssm:Put*']")),
    ("ssm: resource 'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*' is not",
     _GOOD.replace("parameter/app/${Stage}/wm/*", "parameter/*")),
    ("ssm: resource 'arn:aws:ssm:*:*:*' is not", _GOOD.replace(
        '!Sub "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/app/${Stage}/wm/*"',
        "'arn:aws:ssm:*:*:*'")),
    ("Rate.Default: 'rate(1 minutes)' is not an EventBridge", _GOOD.replace("Default: rate(15 minutes)",
                                                                             "Default: rate(1 minutes)")),
    ("Rate: schedule parameter without an AllowedPattern", _GOOD.replace(", AllowedPattern: '^rate.*$'", "")),
    ("Rate: Default 'rate(15 minutes)' does not match", _GOOD.replace("'^rate.*$'", "'^cron.*$'")),
    ("Sweep.Events.T: 'every 15 minutes' is not", _GOOD.replace("'cron(0/15 * * * ? *)'", "'every 15 minutes'")),
    ("Sweep.Events.T: 'cron(0/15 * * * *)' is not", _GOOD.replace("'cron(0/15 * * * ? *)'", "'cron(0/15 * * * *)'")),
    ("Sweep: runs on a schedule without ReservedConcurrentExecutions: 1",
     _GOOD.replace("ReservedConcurrentExecutions: 1", "ReservedConcurrentExecutions: 2")),
    # the link store
    ("T: BillingMode is 'PROVISIONED'", _GOOD.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: PROVISIONED")),
    ("T: TimeToLiveSpecification is {'AttributeName': 'ttl', 'Enabled': True}; it must be enabled on 'expires_at'",
     _GOOD.replace("AttributeName: expires_at", "AttributeName: ttl")),
    ("T: TimeToLiveSpecification is {'AttributeName': 'expires_at', 'Enabled': False}",
     _GOOD.replace("AttributeName: expires_at, Enabled: true", "AttributeName: expires_at, Enabled: false")),
    ("T: TimeToLiveSpecification is None", _GOOD.replace(
        "      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}\n", "")),
    ("T: point-in-time recovery is off", _GOOD.replace("PointInTimeRecoveryEnabled: true",
                                                       "PointInTimeRecoveryEnabled: false")),
    ("T: SSESpecification.SSEEnabled is not true", _GOOD.replace("SSEEnabled: true", "SSEEnabled: false")),
    ("T: DeletionPolicy is 'Delete'", _GOOD.replace("DeletionPolicy: Retain", "DeletionPolicy: Delete")),
    ("T: UpdateReplacePolicy is None", _GOOD.replace("    UpdateReplacePolicy: Retain\n", "")),
    ("T: KeySchema [('pk', 'HASH')]", _GOOD.replace(", {AttributeName: sk, KeyType: RANGE}]", "]")),
    ("T: KeySchema [('pk', 'HASH'), ('sk', 'RANGE')] with types {'pk': 'S', 'sk': 'N'}",
     _GOOD.replace("{AttributeName: sk, AttributeType: S}", "{AttributeName: sk, AttributeType: N}")),
    ("W: RELAY_LINKS_TABLE is None, not !Ref a DynamoDB table",
     _GOOD.replace("      Environment: {Variables: {RELAY_LINKS_TABLE: !Ref T}}\n", "")),
    ("W: RELAY_LINKS_TABLE is {'Ref': 'S'}, not !Ref a DynamoDB table", _GOOD.replace("RELAY_LINKS_TABLE: !Ref T",
                                                                                    "RELAY_LINKS_TABLE: !Ref S")),
    ("R: grants W the dynamodb: actions ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', "
     "'dynamodb:Query', 'dynamodb:Scan']", _GOOD.replace("dynamodb:Query]", "dynamodb:Query, dynamodb:Scan]")),
    ("R: grants W the dynamodb: actions ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem']; the",
     _GOOD.replace(", dynamodb:Query]", "]")),
    ("wildcard action 'dynamodb:*'", _GOOD.replace("[dynamodb:GetItem, dynamodb:PutItem, dynamodb:DeleteItem, "
                                                   "dynamodb:Query]", "'dynamodb:*'")),
    ("dynamodb: resource 'arn:aws:dynamodb:us-east-1:1:table/*' is not !GetAtt T.Arn",
     _GOOD.replace("Resource: !GetAtt T.Arn", "Resource: 'arn:aws:dynamodb:us-east-1:1:table/*'")),
    ("Resource '*' for ['dynamodb:GetItem'", _GOOD.replace("Resource: !GetAtt T.Arn", "Resource: '*'")),
    ("dynamodb: resource 'arn:aws:dynamodb:*:*:table/other' is not a table of this template",
     "Resources: {P: {Type: AWS::IAM::Policy, Properties: {PolicyDocument: {Statement: "
     "[{Effect: Allow, Action: dynamodb:GetItem, Resource: 'arn:aws:dynamodb:*:*:table/other'}]}}}}"),
    # alarms and the dashboard
    ("A: metric 'DeadLetters' is not a metric the relay emits", _GOOD.replace("MetricName: DeadLettered",
                                                                              "MetricName: DeadLetters")),
    ("A: metric DeadLettered has dimensions ['Reason', 'Stage']",
     _GOOD.replace("[{Name: Stage, Value: !Ref Stage}]", "[{Name: Stage, Value: x}, {Name: Reason, Value: y}]")),
    ("A: metric 'Whatever' is not a metric",
     _GOOD.replace("Namespace: !Ref MetricsNamespace", "Namespace: JiraRelay").replace("DeadLettered", "Whatever")),
    ("A: no TreatMissingData", _GOOD.replace("TreatMissingData: notBreaching", "Period: 60")),
    ("A: no AlarmActions", _GOOD.replace("AlarmActions: [!Ref AWS::NoValue]", "Period: 60")),
    ("Dash.widgets[0].metrics[0]: metric 'Apply' is not", _GOOD.replace('"Applied"', '"Apply"')),
    ("A: metric ReconcileDrift has dimensions ['Reason', 'Stage']",
     _GOOD.replace("MetricName: DeadLettered", "MetricName: ReconcileDrift")
     .replace("[{Name: Stage, Value: !Ref Stage}]", "[{Name: Stage, Value: x}, {Name: Reason, Value: y}]")),
    ("Dash.widgets[0].metrics[1]: metric Rejected has dimensions ['Reason', 'Source', 'Stage']",
     _GOOD.replace('"Reason", "${!Literal}"', '"Reason", "a", "Source", "b"')),
    ("Dash: DashboardBody is not JSON", _GOOD.replace('"${Q.QueueName}"]]}}]}', '"${Q.QueueName}"]]}}]')),
]


def self_test() -> int:
    failures = []
    if check_text(_GOOD):
        failures.append(f"good template reported: {check_text(_GOOD)}")
    for expected, source in _BAD:
        found = check_text(source)
        if not any(expected in line for line in found):
            failures.append(f"expected {expected!r}, got {found}")
    # The TTL attribute comes from the code: a template that disagrees with it is wrong.
    expected = "T: TimeToLiveSpecification is {'AttributeName': 'expires_at', 'Enabled': True}; it must be " \
               "enabled on 'ttl'"
    found = check_text(_GOOD, ttl_attribute="ttl")
    if not any(expected in line for line in found):
        failures.append(f"expected {expected!r}, got {found}")
    cases = len(_BAD) + 2
    for line in failures:
        print(f"check_template self-test: FAIL {line}", file=sys.stderr)
    print(f"check_template self-test: {cases - len(failures)}/{cases} cases pass")
    return 1 if failures else 0
