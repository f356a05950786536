//! The AWS-managed policies ECS users attach, built in with AWS's documents
//! (`arn:aws:iam::aws:policy/...`). They cannot be changed or deleted, as in AWS.

/// `(name, path, description, document)`.
pub const POLICIES: &[(&str, &str, &str, &str)] = &[
    (
        "AdministratorAccess",
        "/",
        "Provides full access to AWS services and resources.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ),
    (
        "PowerUserAccess",
        "/",
        "Provides full access to AWS services and resources, but does not allow management of Users and groups.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":["iam:*","organizations:*","account:*"],"Resource":"*"},{"Effect":"Allow","Action":["iam:CreateServiceLinkedRole","iam:DeleteServiceLinkedRole","iam:ListRoles","organizations:DescribeOrganization","account:ListRegions","account:GetAccountInformation"],"Resource":"*"}]}"#,
    ),
    (
        "IAMFullAccess",
        "/",
        "Provides full access to IAM via the AWS Management Console.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:*","organizations:DescribeAccount","organizations:DescribeOrganization","organizations:DescribeOrganizationalUnit","organizations:DescribePolicy","organizations:ListChildren","organizations:ListParents","organizations:ListPoliciesForTarget","organizations:ListRoots","organizations:ListPolicies","organizations:ListTargetsForPolicy"],"Resource":"*"}]}"#,
    ),
    (
        "IAMReadOnlyAccess",
        "/",
        "Provides read only access to IAM via the AWS Management Console.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:GenerateCredentialReport","iam:GenerateServiceLastAccessedDetails","iam:Get*","iam:List*","iam:SimulateCustomPolicy","iam:SimulatePrincipalPolicy"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonECSTaskExecutionRolePolicy",
        "/service-role/",
        "Provides access to other AWS service resources that are required to run Amazon ECS tasks",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerServiceforEC2Role",
        "/service-role/",
        "Default policy for the Amazon EC2 Role for Amazon EC2 Container Service.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:DescribeTags","ecs:CreateCluster","ecs:DeregisterContainerInstance","ecs:DiscoverPollEndpoint","ecs:Poll","ecs:RegisterContainerInstance","ecs:StartTelemetrySession","ecs:UpdateContainerInstancesState","ecs:Submit*","ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"},{"Effect":"Allow","Action":"ecs:TagResource","Resource":"*","Condition":{"StringEquals":{"ecs:CreateAction":["CreateCluster","RegisterContainerInstance"]}}}]}"#,
    ),
    (
        "AmazonEC2ContainerServiceRole",
        "/service-role/",
        "Default policy for Amazon ECS service role.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:AuthorizeSecurityGroupIngress","ec2:Describe*","elasticloadbalancing:DeregisterInstancesFromLoadBalancer","elasticloadbalancing:DeregisterTargets","elasticloadbalancing:Describe*","elasticloadbalancing:RegisterInstancesWithLoadBalancer","elasticloadbalancing:RegisterTargets"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonECSServiceRolePolicy",
        "/aws-service-role/",
        "Policy to enable Amazon ECS to manage your cluster.",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"ECSTaskManagement","Effect":"Allow","Action":["ec2:AttachNetworkInterface","ec2:CreateNetworkInterface","ec2:CreateNetworkInterfacePermission","ec2:DeleteNetworkInterface","ec2:DeleteNetworkInterfacePermission","ec2:Describe*","ec2:DetachNetworkInterface","elasticloadbalancing:DeregisterInstancesFromLoadBalancer","elasticloadbalancing:DeregisterTargets","elasticloadbalancing:Describe*","elasticloadbalancing:RegisterInstancesWithLoadBalancer","elasticloadbalancing:RegisterTargets","route53:ChangeResourceRecordSets","route53:CreateHealthCheck","route53:DeleteHealthCheck","route53:Get*","route53:List*","route53:UpdateHealthCheck","servicediscovery:DeregisterInstance","servicediscovery:Get*","servicediscovery:List*","servicediscovery:RegisterInstance","servicediscovery:UpdateInstanceCustomHealthStatus"],"Resource":"*"},{"Sid":"AutoScaling","Effect":"Allow","Action":["autoscaling:Describe*"],"Resource":"*"},{"Sid":"CWLogGroupManagement","Effect":"Allow","Action":["logs:CreateLogGroup","logs:DescribeLogGroups","logs:PutRetentionPolicy"],"Resource":"arn:aws:logs:*:*:log-group:/aws/ecs/*"},{"Sid":"CWLogStreamManagement","Effect":"Allow","Action":["logs:CreateLogStream","logs:DescribeLogStreams","logs:PutLogEvents"],"Resource":"arn:aws:logs:*:*:log-group:/aws/ecs/*:log-stream:*"},{"Sid":"ExecuteCommandSessionManagement","Effect":"Allow","Action":["ssm:DescribeSessions"],"Resource":"*"},{"Sid":"ExecuteCommand","Effect":"Allow","Action":["ssm:StartSession"],"Resource":["arn:aws:ecs:*:*:task/*","arn:aws:ssm:*:*:document/AmazonECS-ExecuteInteractiveCommand"]},{"Sid":"CloudWatchMetrics","Effect":"Allow","Action":["cloudwatch:PutMetricData"],"Resource":"*","Condition":{"StringEquals":{"cloudwatch:namespace":["AWS/ECS","AWS/ECS/ManagedScaling"]}}}]}"#,
    ),
    (
        "AmazonECS_FullAccess",
        "/",
        "Provides administrative access to Amazon ECS resources and enables ECS features through access to other AWS service resources, including VPCs, Auto Scaling groups, and CloudFormation stacks.",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"ECSIntegrationsManagementPolicy","Effect":"Allow","Action":["application-autoscaling:DeleteScalingPolicy","application-autoscaling:DeregisterScalableTarget","application-autoscaling:DescribeScalableTargets","application-autoscaling:DescribeScalingActivities","application-autoscaling:DescribeScalingPolicies","application-autoscaling:PutScalingPolicy","application-autoscaling:RegisterScalableTarget","appmesh:DescribeVirtualGateway","appmesh:DescribeVirtualNode","appmesh:ListMeshes","appmesh:ListVirtualGateways","appmesh:ListVirtualNodes","autoscaling:CreateAutoScalingGroup","autoscaling:CreateLaunchConfiguration","autoscaling:DeleteAutoScalingGroup","autoscaling:DeleteLaunchConfiguration","autoscaling:Describe*","autoscaling:UpdateAutoScalingGroup","cloudformation:CreateStack","cloudformation:DeleteStack","cloudformation:DescribeStack*","cloudformation:UpdateStack","cloudwatch:DeleteAlarms","cloudwatch:DescribeAlarms","cloudwatch:GetMetricStatistics","cloudwatch:PutMetricAlarm","codedeploy:BatchGetApplicationRevisions","codedeploy:BatchGetApplications","codedeploy:BatchGetDeploymentGroups","codedeploy:BatchGetDeployments","codedeploy:ContinueDeployment","codedeploy:CreateApplication","codedeploy:CreateDeployment","codedeploy:CreateDeploymentGroup","codedeploy:GetApplication","codedeploy:GetApplicationRevision","codedeploy:GetDeployment","codedeploy:GetDeploymentConfig","codedeploy:GetDeploymentGroup","codedeploy:GetDeploymentTarget","codedeploy:ListApplicationRevisions","codedeploy:ListApplications","codedeploy:ListDeploymentConfigs","codedeploy:ListDeploymentGroups","codedeploy:ListDeployments","codedeploy:ListDeploymentTargets","codedeploy:RegisterApplicationRevision","codedeploy:StopDeployment","ec2:AssociateRouteTable","ec2:AttachInternetGateway","ec2:AuthorizeSecurityGroupIngress","ec2:CancelSpotFleetRequests","ec2:CreateInternetGateway","ec2:CreateLaunchTemplate","ec2:CreateRoute","ec2:CreateRouteTable","ec2:CreateSecurityGroup","ec2:CreateSubnet","ec2:CreateVpc","ec2:DeleteLaunchTemplate","ec2:DeleteSubnet","ec2:DeleteVpc","ec2:Describe*","ec2:DetachInternetGateway","ec2:DisassociateRouteTable","ec2:ModifySubnetAttribute","ec2:ModifyVpcAttribute","ec2:RequestSpotFleet","ec2:RunInstances","ecs:*","elasticfilesystem:DescribeAccessPoints","elasticfilesystem:DescribeFileSystems","elasticloadbalancing:CreateListener","elasticloadbalancing:CreateLoadBalancer","elasticloadbalancing:CreateRule","elasticloadbalancing:CreateTargetGroup","elasticloadbalancing:DeleteListener","elasticloadbalancing:DeleteLoadBalancer","elasticloadbalancing:DeleteRule","elasticloadbalancing:DeleteTargetGroup","elasticloadbalancing:DescribeListeners","elasticloadbalancing:DescribeLoadBalancers","elasticloadbalancing:DescribeRules","elasticloadbalancing:DescribeTargetGroups","events:DeleteRule","events:DescribeRule","events:ListRuleNamesByTarget","events:ListTargetsByRule","events:PutRule","events:PutTargets","events:RemoveTargets","fsx:DescribeFileSystems","iam:ListAttachedRolePolicies","iam:ListInstanceProfiles","iam:ListRoles","lambda:ListFunctions","logs:CreateLogGroup","logs:DescribeLogGroups","logs:FilterLogEvents","route53:CreateHostedZone","route53:DeleteHostedZone","route53:GetHealthCheck","route53:GetHostedZone","route53:ListHostedZonesByName","servicediscovery:CreatePrivateDnsNamespace","servicediscovery:CreateService","servicediscovery:DeleteService","servicediscovery:GetNamespace","servicediscovery:GetOperation","servicediscovery:GetService","servicediscovery:ListNamespaces","servicediscovery:ListServices","servicediscovery:UpdateService","sns:ListTopics"],"Resource":["*"]},{"Sid":"SSMPolicy","Effect":"Allow","Action":["ssm:GetParameter","ssm:GetParameters","ssm:GetParametersByPath"],"Resource":"arn:aws:ssm:*:*:parameter/aws/service/ecs*"},{"Sid":"ManagedCloudformationResourcesCleanupPolicy","Effect":"Allow","Action":["ec2:DeleteInternetGateway","ec2:DeleteRoute","ec2:DeleteRouteTable","ec2:DeleteSecurityGroup"],"Resource":["*"],"Condition":{"StringLike":{"ec2:ResourceTag/aws:cloudformation:stack-name":"EC2ContainerService-*"}}},{"Sid":"TasksPassRolePolicy","Action":"iam:PassRole","Effect":"Allow","Resource":["*"],"Condition":{"StringLike":{"iam:PassedToService":"ecs-tasks.amazonaws.com"}}},{"Sid":"InfrastructurePassRolePolicy","Action":"iam:PassRole","Effect":"Allow","Resource":["arn:aws:iam::*:role/ecsInfrastructureRole"],"Condition":{"StringEquals":{"iam:PassedToService":"ecs.amazonaws.com"}}},{"Sid":"InstancePassRolePolicy","Action":"iam:PassRole","Effect":"Allow","Resource":["arn:aws:iam::*:role/ecsInstanceRole*"],"Condition":{"StringLike":{"iam:PassedToService":["ec2.amazonaws.com","ec2.amazonaws.com.cn"]}}},{"Sid":"AutoScalingPassRolePolicy","Action":"iam:PassRole","Effect":"Allow","Resource":["arn:aws:iam::*:role/ecsAutoscaleRole*"],"Condition":{"StringLike":{"iam:PassedToService":["application-autoscaling.amazonaws.com","application-autoscaling.amazonaws.com.cn"]}}},{"Sid":"ServiceLinkedRoleCreationPolicy","Effect":"Allow","Action":"iam:CreateServiceLinkedRole","Resource":"*","Condition":{"StringLike":{"iam:AWSServiceName":["ecs.amazonaws.com","autoscaling.amazonaws.com","ecs.application-autoscaling.amazonaws.com","spot.amazonaws.com","spotfleet.amazonaws.com"]}}},{"Sid":"ELBTaggingPolicy","Effect":"Allow","Action":["elasticloadbalancing:AddTags"],"Resource":"*","Condition":{"StringEquals":{"elasticloadbalancing:CreateAction":["CreateTargetGroup","CreateRule","CreateListener","CreateLoadBalancer"]}}}]}"#,
    ),
    (
        "AmazonECS_ReadOnlyAccess",
        "/",
        "Provides read only access to Amazon ECS resources.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","ecs:List*"],"Resource":"*"}]}"#,
    ),
    (
        "ReadOnlyAccess",
        "/",
        "Provides read-only access to AWS services and resources.",
        // AWS's document lists about 2,000 read actions of every service; this is its part for
        // the services Gantry serves, with the same verbs.
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"ReadOnlyActions","Effect":"Allow","Action":["acm:Describe*","acm:Get*","acm:List*","ecs:Describe*","ecs:List*","elasticloadbalancing:Describe*","iam:Generate*","iam:Get*","iam:List*","iam:Simulate*","logs:Describe*","logs:Get*","logs:FilterLogEvents","logs:ListTagsForResource","logs:ListTagsLogGroup","logs:StartQuery","logs:StopQuery","logs:TestMetricFilter","secretsmanager:Describe*","secretsmanager:GetResourcePolicy","secretsmanager:List*","ssm:Describe*","ssm:Get*","ssm:List*","sts:GetCallerIdentity","sts:GetSessionToken"],"Resource":"*"}]}"#,
    ),
    (
        "SecretsManagerReadWrite",
        "/",
        "Provides read/write access to AWS Secrets Manager via the AWS Management Console.",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"BasePermissions","Effect":"Allow","Action":["secretsmanager:*","cloudformation:CreateChangeSet","cloudformation:DescribeChangeSet","cloudformation:DescribeStackResource","cloudformation:DescribeStacks","cloudformation:ExecuteChangeSet","docdb-elastic:GetCluster","docdb-elastic:ListClusters","ec2:DescribeSecurityGroups","ec2:DescribeSubnets","ec2:DescribeVpcs","kms:DescribeKey","kms:ListAliases","kms:ListKeys","lambda:ListFunctions","rds:DescribeDBClusters","rds:DescribeDBInstances","redshift:DescribeClusters","redshift-serverless:ListWorkgroups","redshift-serverless:GetNamespace","tag:GetResources"],"Resource":"*"},{"Sid":"LambdaPermissions","Effect":"Allow","Action":["lambda:AddPermission","lambda:CreateFunction","lambda:GetFunction","lambda:InvokeFunction","lambda:UpdateFunctionConfiguration"],"Resource":"arn:aws:lambda:*:*:function:SecretsManager*"},{"Sid":"SARPermissions","Effect":"Allow","Action":["serverlessrepo:CreateCloudFormationChangeSet","serverlessrepo:GetApplication"],"Resource":"arn:aws:serverlessrepo:*:*:applications/SecretsManager*"},{"Sid":"S3Permissions","Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::awsserverlessrepo-changesets*","arn:aws:s3:::secrets-manager-rotation-apps-*/*"]}]}"#,
    ),
    (
        "AmazonSSMReadOnlyAccess",
        "/",
        "Provides read only access to Amazon SSM.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:Describe*","ssm:Get*","ssm:List*"],"Resource":"*"}]}"#,
    ),
    (
        "CloudWatchLogsFullAccess",
        "/",
        "Provides full access to CloudWatch Logs",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"CloudWatchLogsFullAccess","Effect":"Allow","Action":["logs:*","cloudwatch:GenerateQuery","cloudwatch:GenerateQueryResultsSummary"],"Resource":"*"}]}"#,
    ),
    (
        "CloudWatchLogsReadOnlyAccess",
        "/",
        "Provides read only access to CloudWatch Logs",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"CloudWatchLogsReadOnlyAccess","Effect":"Allow","Action":["logs:Describe*","logs:Get*","logs:List*","logs:StartQuery","logs:StopQuery","logs:TestMetricFilter","logs:FilterLogEvents","logs:StartLiveTail","logs:StopLiveTail","cloudwatch:GenerateQuery","cloudwatch:GenerateQueryResultsSummary"],"Resource":"*"}]}"#,
    ),
    (
        "ElasticLoadBalancingFullAccess",
        "/",
        "Provides full access to Amazon ElasticLoadBalancing, and limited access to other services necessary to provide ElasticLoadBalancing features.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"elasticloadbalancing:*","Resource":"*"},{"Effect":"Allow","Action":["ec2:DescribeAccountAttributes","ec2:DescribeAddresses","ec2:DescribeInternetGateways","ec2:DescribeSecurityGroups","ec2:DescribeSubnets","ec2:DescribeVpcs","ec2:DescribeVpcClassicLink","ec2:DescribeInstances","ec2:DescribeNetworkInterfaces","ec2:DescribeClassicLinkInstances","ec2:DescribeRouteTables","ec2:DescribeCoipPools","ec2:GetCoipPoolUsage","ec2:DescribeVpcPeeringConnections","cognito-idp:DescribeUserPoolClient"],"Resource":"*"},{"Effect":"Allow","Action":"iam:CreateServiceLinkedRole","Resource":"*","Condition":{"StringEquals":{"iam:AWSServiceName":"elasticloadbalancing.amazonaws.com"}}}]}"#,
    ),
];

/// The ARN of an AWS-managed policy.
pub fn arn(path: &str, name: &str) -> String {
    format!("arn:aws:iam::aws:policy{path}{name}")
}

/// The AWS-managed policy `arn` names: `(name, path, description, document)`.
pub fn find(arn_: &str) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    POLICIES.iter().find(|(name, path, _, _)| arn(path, name) == arn_)
}
