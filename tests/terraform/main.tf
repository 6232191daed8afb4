# What a team that runs ECS on its own machines would write: a cluster with settings,
# configuration, tags and Fargate capacity providers; an EC2 (bridge) and a Fargate (awsvpc)
# task definition with volumes, health checks and tags; a service on each, with placement, the
# deployment circuit breaker, tag propagation, ECS-managed tags and a network configuration.
# scripts/terraform_smoke.py applies it against a three-node cluster with agents, then plans
# (no changes), then destroys it.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

variable "endpoint" {
  type        = string
  description = "An ECS API endpoint of the ecsd cluster (any node)."
}

variable "cluster_name" {
  type    = string
  default = "tf-smoke"
}

variable "web_image_command" {
  type    = list(string)
  default = ["sleep", "3600"]
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "tf-smoke"
  secret_key                  = "tf-smoke"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    ecs = var.endpoint
  }
  default_tags {
    tags = {
      managed-by = "terraform"
    }
  }
}

resource "aws_ecs_cluster" "main" {
  name = var.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      logging = "DEFAULT"
    }
  }

  tags = {
    team = "platform"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = 1
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "web" {
  family       = "tf-web"
  network_mode = "bridge"
  requires_compatibilities = ["EC2"]

  container_definitions = jsonencode([
    {
      name      = "web"
      image     = "ecsd-busybox:latest"
      cpu       = 64
      memory    = 64
      essential = true
      command   = var.web_image_command
      portMappings = [
        { containerPort = 8080, hostPort = 0, protocol = "tcp" }
      ]
      environment = [
        { name = "MODE", value = "smoke" }
      ]
      mountPoints = [
        { sourceVolume = "scratch", containerPath = "/scratch", readOnly = false }
      ]
      healthCheck = {
        command     = ["CMD-SHELL", "true"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 0
      }
    }
  ])

  volume {
    name      = "scratch"
    host_path = "/tmp"
  }

  tags = {
    app = "web"
  }
}

resource "aws_ecs_task_definition" "fargate" {
  family                   = "tf-fargate"
  network_mode             = "awsvpc"
  requires_compatibilities = ["FARGATE"]
  cpu                      = "256"
  memory                   = "512"
  execution_role_arn       = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"
  task_role_arn            = "arn:aws:iam::000000000000:role/app"

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  ephemeral_storage {
    size_in_gib = 21
  }

  container_definitions = jsonencode([
    {
      name      = "app"
      image     = "ecsd-busybox:latest"
      essential = true
      command   = ["sleep", "3600"]
      portMappings = [
        { containerPort = 80, hostPort = 80, protocol = "tcp" }
      ]
      mountPoints = [
        { sourceVolume = "cache", containerPath = "/cache", readOnly = false }
      ]
      healthCheck = {
        command     = ["CMD-SHELL", "true"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 10
      }
    }
  ])

  volume {
    name = "cache"
  }

  tags = {
    app = "fargate"
  }
}

resource "aws_ecs_service" "web" {
  name            = "web"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.web.arn
  desired_count   = 2
  launch_type     = "EC2"

  deployment_maximum_percent         = 200
  deployment_minimum_healthy_percent = 50

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  ordered_placement_strategy {
    type  = "spread"
    field = "attribute:ecs.availability-zone"
  }

  ordered_placement_strategy {
    type  = "binpack"
    field = "memory"
  }

  placement_constraints {
    type = "distinctInstance"
  }

  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true
  wait_for_steady_state   = true

  tags = {
    tier = "frontend"
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}

resource "aws_ecs_service" "fargate" {
  name            = "worker"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.fargate.arn
  desired_count   = 1
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = ["subnet-0a1b2c3d"]
    security_groups  = ["sg-0a1b2c3d"]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = false
  }

  propagate_tags                    = "TASK_DEFINITION"
  enable_ecs_managed_tags           = true
  enable_execute_command            = true
  health_check_grace_period_seconds = 30
  wait_for_steady_state             = true

  deployment_controller {
    type = "ECS"
  }

  tags = {
    tier = "backend"
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}

resource "aws_ecs_service" "spot" {
  name            = "spot-worker"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.fargate.arn
  desired_count   = 1

  capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = 1
  }

  network_configuration {
    subnets = ["subnet-0a1b2c3d"]
  }

  wait_for_steady_state = true

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}

resource "aws_ecs_account_setting_default" "insights" {
  name  = "containerInsights"
  value = "enhanced"
}

data "aws_ecs_cluster" "main" {
  cluster_name = aws_ecs_cluster.main.name
}

data "aws_ecs_task_definition" "web" {
  task_definition = aws_ecs_task_definition.web.family
}

output "web_service" {
  value = aws_ecs_service.web.id
}

output "cluster_arn" {
  value = aws_ecs_cluster.main.arn
}

output "cluster_status" {
  value = data.aws_ecs_cluster.main.status
}

output "web_revision" {
  value = data.aws_ecs_task_definition.web.revision
}
