package main

// VendoredCRDs is where the repository keeps the Strimzi CRDs, relative to its root.
const VendoredCRDs = "deploy/strimzi-crds"

// Target is one kustomize directory and the policies its rendering must meet.
type Target struct {
	Path string
	// StorageClass, when set, is the class every Kafka persistent volume must use.
	StorageClass string
	// Kustomization marks a component or base that renders on its own.
	Kustomization bool
}

// Targets are the renderings checked by make deploy-check.
var Targets = []Target{
	{Path: "deploy/kubernetes/base", StorageClass: "ocs-storagecluster-ceph-rbd"},
	{Path: "deploy/kubernetes/overlays/kind"},
	{Path: "deploy/kubernetes/overlays/openshift-stretched", StorageClass: "ocs-storagecluster-ceph-rbd"},
}
