package topics

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Admin is what the syncer asks of a cluster: the calls of sarama.ClusterAdmin it uses, and
// CreateTopics, which sarama's ClusterAdmin offers one topic per request only (NewAdmin adds
// it). Configs are described with DescribeConfigs, many topics per request.
type Admin interface {
	ListTopics() (map[string]sarama.TopicDetail, error)
	// CreateTopics creates every topic of details in one CreateTopics request and returns the
	// cluster's answer for each of them: nil when it was created, else the broker's error for
	// the topic (a *sarama.TopicError with the broker's message; errors.Is finds its code). The
	// error is the request's, when it got no answer.
	CreateTopics(details map[string]*sarama.TopicDetail) (map[string]error, error)
	CreatePartitions(topic string, count int32, assignment [][]int32, validateOnly bool) error
	DescribeConfigs(resources []*sarama.ConfigResource, options sarama.DescribeConfigsOptions) ([]*sarama.ConfigResourceResult, error)
	DescribeCluster() (brokers []*sarama.Broker, controllerID int32, err error)
	IncrementalAlterConfig(resourceType sarama.ConfigResourceType, name string, entries map[string]sarama.IncrementalAlterConfigsEntry, validateOnly bool) error
	ListAcls(filter sarama.AclFilter) ([]sarama.ResourceAcls, error)
	CreateACLs(acls []*sarama.ResourceAcls) error
}

// NewAdmin returns admin as the syncer uses it; conf is the configuration admin was opened
// with (its Version picks the CreateTopics version, its Admin.Timeout is how long the broker
// may take to create a request's topics).
func NewAdmin(admin sarama.ClusterAdmin, conf *sarama.Config) Admin {
	return clusterAdmin{ClusterAdmin: admin, version: conf.Version, timeout: conf.Admin.Timeout}
}

type clusterAdmin struct {
	sarama.ClusterAdmin
	version sarama.KafkaVersion
	timeout time.Duration
}

// CreateTopics sends details to the controller in one request. A topic the broker answers
// NOT_CONTROLLER for (the controller moved; KRaft brokers forward instead) is created again
// through sarama's CreateTopic, which finds the new controller, and the other such topics are
// then sent to it in one more request.
func (a clusterAdmin) CreateTopics(details map[string]*sarama.TopicDetail) (map[string]error, error) {
	out, err := a.createOnce(details)
	if err != nil {
		return nil, err
	}
	moved := make(map[string]*sarama.TopicDetail)
	for name, err := range out {
		if errors.Is(err, sarama.ErrNotController) {
			moved[name] = details[name]
		}
	}
	for name, d := range moved {
		delete(moved, name)
		out[name] = a.CreateTopic(name, d, false)
		break
	}
	if len(moved) > 0 {
		again, err := a.createOnce(moved)
		if err != nil {
			return nil, err
		}
		for name, c := range again {
			out[name] = c
		}
	}
	return out, nil
}

func (a clusterAdmin) createOnce(details map[string]*sarama.TopicDetail) (map[string]error, error) {
	b, err := a.Controller()
	if err != nil {
		return nil, fmt.Errorf("find the controller: %w", err)
	}
	resp, err := b.CreateTopics(sarama.NewCreateTopicsRequest(a.version, details, a.timeout, false))
	if err != nil {
		return nil, fmt.Errorf("CreateTopics request to broker %d: %w", b.ID(), err)
	}
	out := make(map[string]error, len(details))
	for name := range details {
		te, ok := resp.TopicErrors[name]
		switch {
		case !ok:
			out[name] = sarama.ErrIncompleteResponse
		case !errors.Is(te.Err, sarama.ErrNoError):
			out[name] = te
		default:
			out[name] = nil
		}
	}
	return out, nil
}
