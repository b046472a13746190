package main

// SharedCRDs is where the Strimzi CRDs are, relative to the repository's root: the shared data
// beside the clone, which is not to be copied into the repository.
const SharedCRDs = "../shared/strimzi-crds"

// KmirrorImage is the image every kmirror container runs: the tag a release build pushes
// (`make image` tags the binary's version, git describe: v0.2.0), the same for every flow.
const KmirrorImage = "quay.io/kmirror/kmirror:v0.2.0"

// Namespace is where every namespaced object of the deployment lives.
const Namespace = "kafka-mirror"

// Sites names the site each Kafka cluster, and kmirror, must run in.
var Sites = map[string]string{"europe-cluster": "europe", "us-cluster": "us", "kmirror": "us", "kmirror-reverse": "europe"}

// Target is one kustomize directory and the policies its rendering must meet.
type Target struct {
	Path string
	// StorageClasses, when set, maps each Kafka cluster to the class its persistent volumes must
	// use (one per site).
	StorageClasses map[string]string
	// SiteKey, when set, is the node label whose value names a site: every node pool and kmirror
	// must require it to be their site (Sites).
	SiteKey string
	// RackKey is the node label Kafka's rack awareness must use.
	RackKey string
	// CopiedSecrets are the Secrets a pod of the rendering may mount although nothing in it
	// makes them: copied from the other site's cluster (its cluster CA, a KafkaUser's password),
	// under the names Strimzi gives them there.
	CopiedSecrets []string
}

const (
	region   = "topology.kubernetes.io/region"
	zone     = "topology.kubernetes.io/zone"
	hostname = "kubernetes.io/hostname"
)

// Targets are the renderings checked by make deploy-check.
var Targets = []Target{
	{Path: "deploy/kubernetes/base", SiteKey: region, RackKey: zone},
	{Path: "deploy/kubernetes/overlays/kind", RackKey: zone},
	{Path: "deploy/kubernetes/overlays/openshift-stretched", SiteKey: region, RackKey: zone,
		StorageClasses: map[string]string{"europe-cluster": "kafka-europe", "us-cluster": "kafka-us"}},
	{Path: "deploy/kubernetes/overlays/openshift-stretched-demo", SiteKey: region, RackKey: zone,
		StorageClasses: map[string]string{"europe-cluster": "kafka-europe", "us-cluster": "kafka-us"}},
	{Path: "deploy/kubernetes/overlays/openshift-odf-stretch", SiteKey: zone, RackKey: hostname,
		StorageClasses: map[string]string{"europe-cluster": "ocs-storagecluster-ceph-rbd", "us-cluster": "ocs-storagecluster-ceph-rbd"}},
	{Path: "deploy/kubernetes/overlays/openshift-two-sites/europe", RackKey: zone,
		CopiedSecrets: []string{"us-cluster-cluster-ca-cert", "kmirror-reverse-source"}},
	{Path: "deploy/kubernetes/overlays/openshift-two-sites/us", RackKey: zone,
		CopiedSecrets: []string{"europe-cluster-cluster-ca-cert", "kmirror-source"}},
}

// TargetByPath returns the target at path, for tests.
func TargetByPath(path string) (Target, bool) {
	for _, t := range Targets {
		if t.Path == path {
			return t, true
		}
	}
	return Target{}, false
}
