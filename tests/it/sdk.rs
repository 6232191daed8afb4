//! The AWS SDK for Rust drives the cluster API against a follower, unchanged but for the endpoint.

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::ClusterField;

use crate::harness::TestCluster;

fn client(url: &str) -> aws_sdk_ecs::Client {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(url)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_rust_works_against_a_follower() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let ecs = client(&cluster.url(cluster.other_than(leader)));

    let created = ecs
        .create_cluster()
        .cluster_name("sdk")
        .tags(aws_sdk_ecs::types::Tag::builder().key("env").value("test").build())
        .send()
        .await
        .unwrap();
    let c = created.cluster().unwrap();
    assert_eq!(c.cluster_name(), Some("sdk"));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(c.cluster_arn(), Some("arn:aws:ecs:us-east-1:000000000000:cluster/sdk"));

    for i in 0..4 {
        ecs.create_cluster()
            .cluster_name(format!("page-{i}"))
            .send()
            .await
            .unwrap();
    }
    let pages: Vec<_> = ecs
        .list_clusters()
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let arns: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.unwrap().cluster_arns.unwrap_or_default())
        .collect();
    assert_eq!(arns.len(), 5);
    assert_eq!(pages_of(&arns), vec!["page-0", "page-1", "page-2", "page-3", "sdk"]);

    let described = ecs
        .describe_clusters()
        .clusters("sdk")
        .clusters("missing")
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters()[0].tags()[0].key(), Some("env"));
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));

    let container = aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("app")
        .image("nginx:1.25")
        .memory(128)
        .port_mappings(aws_sdk_ecs::types::PortMapping::builder().container_port(80).build())
        .build();
    let registered = ecs
        .register_task_definition()
        .family("sdk-web")
        .container_definitions(container.clone())
        .cpu("256")
        .send()
        .await
        .unwrap();
    let td = registered.task_definition().unwrap();
    assert_eq!(td.revision(), 1);
    assert_eq!(td.container_definitions()[0].essential(), Some(true));
    assert!(td.registered_at().is_some());
    ecs.register_task_definition()
        .family("sdk-web")
        .container_definitions(container)
        .send()
        .await
        .unwrap();
    let described = ecs
        .describe_task_definition()
        .task_definition("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(described.task_definition().unwrap().revision(), 2);
    let listed = ecs
        .list_task_definitions()
        .family_prefix("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_definition_arns().len(), 2);
    let families = ecs.list_task_definition_families().send().await.unwrap();
    assert_eq!(families.families(), ["sdk-web"]);
    let gone = ecs
        .deregister_task_definition()
        .task_definition("sdk-web:1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.task_definition().unwrap().status().map(|s| s.as_str()),
        Some("INACTIVE")
    );

    let deleted = ecs.delete_cluster().cluster("sdk").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    let err = ecs.delete_cluster().cluster("sdk").send().await.unwrap_err();
    assert!(err.into_service_error().is_cluster_not_found_exception());
    cluster.shutdown().await;
}

fn pages_of(arns: &[String]) -> Vec<&str> {
    arns.iter().map(|a| a.rsplit('/').next().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_rust_drives_instances_attributes_settings_and_tags() {
    use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus, Resource, SettingName, Tag, TargetType, VersionInfo};
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let ecs = client(&cluster.url(cluster.other_than(leader)));
    ecs.create_cluster().cluster_name("sdk-ci").send().await.unwrap();

    tracing::info!("--- account settings");
    let put = ecs
        .put_account_setting()
        .name(SettingName::ContainerInstanceLongArnFormat)
        .value("enabled")
        .send()
        .await
        .unwrap();
    assert_eq!(put.setting().unwrap().value(), Some("enabled"), "echoed as sent");
    let listed = ecs
        .list_account_settings()
        .effective_settings(true)
        .send()
        .await
        .unwrap();
    // A page of ten (ListAccountSettings' most) of today's eleven settings.
    assert_eq!(listed.settings().len(), 10);
    ecs.delete_account_setting()
        .name(SettingName::TaskLongArnFormat)
        .send()
        .await
        .unwrap();

    tracing::info!("--- container instances");
    let registered = ecs
        .register_container_instance()
        .cluster("sdk-ci")
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(2048)
                .build(),
        )
        .version_info(VersionInfo::builder().agent_version("0.0.1").build())
        .attributes(Attribute::builder().name("ecs.os-type").value("linux").build().unwrap())
        .tags(Tag::builder().key("rack").value("r1").build())
        .send()
        .await
        .unwrap();
    let instance = registered.container_instance().unwrap();
    let arn = instance.container_instance_arn().unwrap().to_string();
    assert!(arn.contains("/sdk-ci/"), "{arn}");
    assert_eq!(instance.registered_resources()[1].integer_value(), 2048);
    assert!(instance.registered_at().is_some());
    let described = ecs
        .describe_container_instances()
        .cluster("sdk-ci")
        .container_instances(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(described.container_instances().len(), 1);
    let listed = ecs
        .list_container_instances()
        .cluster("sdk-ci")
        .filter("attribute:ecs.os-type == linux")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&arn));
    let drained = ecs
        .update_container_instances_state()
        .cluster("sdk-ci")
        .container_instances(&arn)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(drained.container_instances()[0].status(), Some("DRAINING"));
    let updating = ecs
        .update_container_agent()
        .cluster("sdk-ci")
        .container_instance(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        updating
            .container_instance()
            .unwrap()
            .agent_update_status()
            .map(|s| s.as_str()),
        Some("PENDING")
    );
    let err = ecs
        .update_container_agent()
        .cluster("sdk-ci")
        .container_instance(&arn)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_update_in_progress_exception());
    let poll = ecs.discover_poll_endpoint().cluster("sdk-ci").send().await.unwrap();
    assert!(poll.endpoint().unwrap().starts_with("http://127.0.0.1:"));

    tracing::info!("--- attributes");
    let attribute = Attribute::builder()
        .name("stack")
        .value("prod")
        .target_id(&arn)
        .build()
        .unwrap();
    ecs.put_attributes()
        .cluster("sdk-ci")
        .attributes(attribute)
        .send()
        .await
        .unwrap();
    let attrs = ecs
        .list_attributes()
        .cluster("sdk-ci")
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.attributes().len(), 1, "{attrs:?}");
    assert_eq!(attrs.attributes()[0].value(), Some("prod"));
    assert_eq!(attrs.attributes()[0].target_id(), Some(arn.as_str()));
    let names_on_instance = || async {
        let described = ecs
            .describe_container_instances()
            .cluster("sdk-ci")
            .container_instances(&arn)
            .send()
            .await
            .unwrap();
        let mut names: Vec<(String, Option<String>)> = described.container_instances()[0]
            .attributes()
            .iter()
            .map(|a| (a.name().to_string(), a.value().map(str::to_string)))
            .collect();
        names.sort();
        names
    };
    let before = names_on_instance().await;
    assert!(
        before.contains(&("stack".to_string(), Some("prod".to_string()))),
        "{before:?}"
    );
    let gone = Attribute::builder().name("stack").target_id(&arn).build().unwrap();
    ecs.delete_attributes()
        .cluster("sdk-ci")
        .attributes(gone)
        .send()
        .await
        .unwrap();
    let attrs = ecs
        .list_attributes()
        .cluster("sdk-ci")
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert!(attrs.attributes().is_empty(), "deleted, still listed: {attrs:?}");
    let after = names_on_instance().await;
    let expected: Vec<_> = before.into_iter().filter(|(name, _)| name != "stack").collect();
    assert_eq!(after, expected, "the instance lost the deleted attribute, and only it");
    assert!(
        after.contains(&("ecs.os-type".to_string(), Some("linux".to_string()))),
        "{after:?}"
    );

    tracing::info!("--- tags");
    ecs.tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("env").value("ci").build())
        .send()
        .await
        .unwrap();
    let tag_pairs = || async {
        let tags = ecs.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
        let mut pairs: Vec<(Option<String>, Option<String>)> = tags
            .tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string)))
            .collect();
        pairs.sort();
        pairs
    };
    let pair = |k: &str, v: &str| (Some(k.to_string()), Some(v.to_string()));
    assert_eq!(tag_pairs().await, vec![pair("env", "ci"), pair("rack", "r1")]);
    ecs.untag_resource()
        .resource_arn(&arn)
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tag_pairs().await,
        vec![pair("rack", "r1")],
        "the untagged key is gone, the other stays"
    );
    let err = ecs
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecs:us-east-1:000000000000:cluster/none")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_cluster_not_found_exception());

    tracing::info!("--- deregister");
    let dereg = ecs
        .deregister_container_instance()
        .cluster("sdk-ci")
        .container_instance(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(dereg.container_instance().unwrap().status(), Some("INACTIVE"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_rust_drives_tasks_and_services() {
    use aws_sdk_ecs::types::{
        ContainerDefinition, ContainerStateChange, DesiredStatus, NetworkBinding, PlacementStrategy,
        PlacementStrategyType, Resource, TransportProtocol,
    };
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let ecs = client(&cluster.url(cluster.other_than(leader)));
    ecs.create_cluster().cluster_name("sdk-t").send().await.unwrap();
    ecs.register_task_definition()
        .family("sdk-task")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image("busybox")
                .memory(256)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance = ecs
        .register_container_instance()
        .cluster("sdk-t")
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();

    tracing::info!("--- RunTask and StartTask");
    let run = ecs
        .run_task()
        .cluster("sdk-t")
        .task_definition("sdk-task")
        .count(2)
        .placement_strategy(
            PlacementStrategy::builder()
                .r#type(PlacementStrategyType::Binpack)
                .field("memory")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(run.tasks().len(), 2);
    assert!(run.failures().is_empty());
    let task = run.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(run.tasks()[0].last_status(), Some("PENDING"));
    assert!(run.tasks()[0].created_at().is_some());
    let started = ecs
        .start_task()
        .cluster("sdk-t")
        .task_definition("sdk-task:1")
        .container_instances(&instance)
        .send()
        .await
        .unwrap();
    assert_eq!(started.tasks().len(), 1);
    let full = ecs
        .run_task()
        .cluster("sdk-t")
        .task_definition("sdk-task")
        .count(2)
        .send()
        .await
        .unwrap();
    // 1024 MiB hold four 256 MiB tasks: the fifth does not fit.
    assert_eq!(full.tasks().len(), 1);
    assert_eq!(full.failures()[0].reason(), Some("RESOURCE:MEMORY"));

    tracing::info!("--- agent reports");
    let ack = ecs
        .submit_task_state_change()
        .cluster("sdk-t")
        .task(&task)
        .status("RUNNING")
        .containers(
            ContainerStateChange::builder()
                .container_name("main")
                .status("RUNNING")
                .network_bindings(
                    NetworkBinding::builder()
                        .container_port(80)
                        .host_port(32768)
                        .protocol(TransportProtocol::Tcp)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ack.acknowledgment(), Some("ACK"));
    ecs.submit_container_state_change()
        .cluster("sdk-t")
        .task(&task)
        .container_name("main")
        .status("RUNNING")
        .send()
        .await
        .unwrap();
    let described = ecs.describe_tasks().cluster("sdk-t").tasks(&task).send().await.unwrap();
    let t = &described.tasks()[0];
    assert_eq!(t.last_status(), Some("RUNNING"));
    assert_eq!(t.containers()[0].network_bindings()[0].host_port(), Some(32768));
    assert!(t.started_at().is_some());

    tracing::info!("--- StopTask and ListTasks");
    let stopped = ecs.stop_task().cluster("sdk-t").task(&task).send().await.unwrap();
    assert_eq!(stopped.task().unwrap().desired_status(), Some("STOPPED"));
    let listed = ecs
        .list_tasks()
        .cluster("sdk-t")
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&task));
    let running = ecs.list_tasks().cluster("sdk-t").send().await.unwrap();
    assert_eq!(running.task_arns().len(), 3);

    tracing::info!("--- services");
    let created = ecs
        .create_service()
        .cluster("sdk-t")
        .service_name("svc")
        .task_definition("sdk-task")
        .desired_count(1)
        .client_token("sdk-token")
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(service.status(), Some("ACTIVE"));
    assert_eq!(service.deployments()[0].status(), Some("PRIMARY"));
    let updated = ecs
        .update_service()
        .cluster("sdk-t")
        .service("svc")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.service().unwrap().desired_count(), 0);
    let described = ecs
        .describe_services()
        .cluster("sdk-t")
        .services("svc")
        .services("ghost")
        .send()
        .await
        .unwrap();
    assert_eq!(described.services().len(), 1);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    let listed = ecs.list_services().cluster("sdk-t").send().await.unwrap();
    assert_eq!(listed.service_arns().len(), 1);
    let deleted = ecs
        .delete_service()
        .cluster("sdk-t")
        .service("svc")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.service().unwrap().status(), Some("DRAINING"));
    let err = ecs
        .update_service()
        .cluster("sdk-t")
        .service("ghost")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_service_not_found_exception());
    cluster.shutdown().await;
}
