"""Network: a VPC with public and private subnets in every AZ, NAT, flow logs and an S3
gateway endpoint."""

from __future__ import annotations

import ipaddress

from cdktf import Fn
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from constructs import Construct

from infra.components.iam import policy_json
from infra.components.kms import customer_key
from infra.config import Environment
from infra.node_pools import DISCOVERY_TAG
from infra.stacks.base import EnvStack


def subnet_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """Public subnets take the first /24s, private subnets /20s further up the range."""
    net = ipaddress.ip_network(cidr)
    small = list(net.subnets(new_prefix=24))
    public = [str(s) for s in small[:count]]
    large = list(net.subnets(new_prefix=20))
    private = [str(s) for s in large[1 : count + 1]]
    return public, private


class Network(Construct):
    def __init__(self, scope: Construct, id_: str, env: Environment) -> None:
        super().__init__(scope, id_)
        self.env = env
        self.cfg = env.network
        self.cluster = env.cluster.name
        self.vpc = Vpc(
            self,
            "vpc",
            cidr_block=self.cfg.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{self.cluster}-vpc"},
        )
        # Lock the default security group down: nothing may use it by accident.
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc.id, ingress=[], egress=[])
        igw = InternetGateway(self, "igw", vpc_id=self.vpc.id, tags={"Name": f"{self.cluster}-igw"})
        self._subnets()
        self._public_routes(igw)
        self._private_routes(self._nat_gateways(igw))
        # S3 traffic from private subnets stays on the AWS network (and off the NAT bill).
        self.s3_endpoint = VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{env.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in self.private_route_tables],
            tags={"Name": f"{self.cluster}-s3"},
        )
        self._flow_logs()

    def _subnets(self) -> None:
        """A public and a private subnet in every AZ."""
        public_cidrs, private_cidrs = subnet_cidrs(self.cfg.cidr, len(self.cfg.azs))
        self.public_subnets: list[Subnet] = []
        self.private_subnets: list[Subnet] = []
        for index, az in enumerate(self.cfg.azs):
            self.public_subnets.append(
                self._subnet(
                    "public",
                    az,
                    public_cidrs[index],
                    self.cluster,
                    elb_role="elb",
                    map_public_ip_on_launch=False,
                )
            )
            self.private_subnets.append(
                self._subnet(
                    "private", az, private_cidrs[index], self.cluster, elb_role="internal-elb"
                )
            )

    def _public_routes(self, igw: InternetGateway) -> None:
        """One route table for the public subnets, its default route to the internet gateway."""
        public_rt = RouteTable(
            self, "public-rt", vpc_id=self.vpc.id, tags={"Name": f"{self.cluster}-public"}
        )
        Route(
            self,
            "public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
        )
        for subnet, az in zip(self.public_subnets, self.cfg.azs, strict=True):
            RouteTableAssociation(
                self, f"public-rta-{az}", subnet_id=subnet.id, route_table_id=public_rt.id
            )

    def _nat_gateways(self, igw: InternetGateway) -> dict[str, NatGateway]:
        """NAT: none, one shared by every AZ (cheaper), or one per AZ (no cross-AZ dependency)."""
        cfg = self.cfg
        nat_azs = {"none": [], "single": cfg.azs[:1], "per_az": cfg.azs}[cfg.nat]
        nats: dict[str, NatGateway] = {}
        for az in nat_azs:
            index = cfg.azs.index(az)
            eip = Eip(
                self, f"nat-eip-{az}", domain="vpc", tags={"Name": f"{self.cluster}-nat-{az}"}
            )
            nats[az] = NatGateway(
                self,
                f"nat-{az}",
                allocation_id=eip.id,
                subnet_id=self.public_subnets[index].id,
                tags={"Name": f"{self.cluster}-nat-{az}"},
                depends_on=[igw],
            )
        return nats

    def _private_routes(self, nats: dict[str, NatGateway]) -> None:
        """A route table per private subnet, its default route to the AZ's NAT (or the one)."""
        self.private_route_tables: list[RouteTable] = []
        for subnet, az in zip(self.private_subnets, self.cfg.azs, strict=True):
            rt = RouteTable(
                self,
                f"private-rt-{az}",
                vpc_id=self.vpc.id,
                tags={"Name": f"{self.cluster}-private-{az}"},
            )
            self.private_route_tables.append(rt)
            nat = nats.get(az) or (next(iter(nats.values())) if nats else None)
            if nat is not None:
                Route(
                    self,
                    f"private-default-{az}",
                    route_table_id=rt.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat.id,
                )
            RouteTableAssociation(
                self, f"private-rta-{az}", subnet_id=subnet.id, route_table_id=rt.id
            )

    def _flow_logs(self) -> None:
        """VPC flow logs to CloudWatch Logs, encrypted with a key of their own."""
        env = self.env
        self.logs_key = customer_key(
            self,
            "flow-logs-key",
            env,
            description=f"{self.cluster} VPC flow logs",
            services=[f"logs.{env.region}.amazonaws.com"],
        )
        log_group = CloudwatchLogGroup(
            self,
            "flow-logs",
            name=f"/tuneops/{env.name}/vpc-flow-logs",
            retention_in_days=self.cfg.flow_log_retention_days,
            kms_key_id=self.logs_key.arn,
        )
        role = self._flow_logs_role(log_group)
        FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
        )

    def _flow_logs_role(self, log_group: CloudwatchLogGroup) -> IamRole:
        """The role the flow-logs service assumes to write into ``log_group`` only."""
        role = IamRole(
            self,
            "flow-logs-role",
            name=f"{self.cluster}-vpc-flow-logs",
            assume_role_policy=policy_json(
                [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            ),
        )
        IamRolePolicy(
            self,
            "flow-logs-policy",
            name="write-flow-logs",
            role=role.id,
            policy=Fn.jsonencode(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [log_group.arn, f"{log_group.arn}:*"],
                        }
                    ],
                }
            ),
        )
        return role

    def _subnet(
        self,
        tier: str,
        az: str,
        cidr: str,
        cluster: str,
        *,
        elb_role: str,
        map_public_ip_on_launch: bool | None = None,
    ) -> Subnet:
        """One subnet of a tier in one AZ, tagged so EKS puts ``elb_role`` load balancers there
        (``elb``: internet-facing, ``internal-elb``: internal); private ones also carry
        Karpenter's discovery tag."""
        return Subnet(
            self,
            f"{tier}-{az}",
            vpc_id=self.vpc.id,
            cidr_block=cidr,
            availability_zone=az,
            map_public_ip_on_launch=map_public_ip_on_launch,
            tags={
                "Name": f"{cluster}-{tier}-{az}",
                f"kubernetes.io/role/{elb_role}": "1",
                f"kubernetes.io/cluster/{cluster}": "shared",
                # Karpenter's EC2NodeClasses launch nodes into the private subnets only.
                **({DISCOVERY_TAG: cluster} if tier == "private" else {}),
            },
        )


class NetworkStack(EnvStack):
    stack_kind = "network"

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env)
        net = Network(self, "network", env)
        self.output("vpc_id", net.vpc.id, "VPC id")
        self.output("vpc_cidr", net.vpc.cidr_block, "VPC CIDR block")
        self.output(
            "private_subnet_ids",
            [s.id for s in net.private_subnets],
            "private subnets (nodes, RDS)",
        )
        self.output(
            "public_subnet_ids", [s.id for s in net.public_subnets], "public subnets (NAT, LBs)"
        )
        self.output("s3_endpoint_id", net.s3_endpoint.id, "S3 gateway endpoint")
