//! The one integration-test binary: real nodes on loopback, driven through their public APIs.

mod account_settings;
mod agents;
mod api;
mod attributes;
mod auth;
mod configs;
mod container_instances;
mod deployments;
mod dial;
mod harness;
mod hostile;
mod leadership;
mod malformed;
mod membership;
mod page_tokens;
mod processes;
mod racing;
mod replication;
mod sdk;
mod services;
mod storage_suite;
mod tags;
mod task_definitions;
mod tasks;
mod tidy;
mod trust;
