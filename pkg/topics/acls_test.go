package topics

import (
	"context"
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
)

func topicACLs(name string, pattern sarama.AclResourcePatternType, acls ...*sarama.Acl) sarama.ResourceAcls {
	return sarama.ResourceAcls{Resource: sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: name, ResourcePatternType: pattern}, Acls: acls}
}

func allow(principal string, op sarama.AclOperation) *sarama.Acl {
	return &sarama.Acl{Principal: principal, Host: "*", Operation: op, PermissionType: sarama.AclPermissionAllow}
}

// TestReadACLsAreCopiedRenamedAndNeverWrite: with the prefix policy, a user's READ, ALL and WRITE
// on a source topic become one READ on the renamed target topic (ALL downgraded, deduplicated),
// DESCRIBE is copied, and WRITE, DENY, other operations, PREFIXED ACLs, the wildcard topic and
// excluded topics are not; the target's own ACLs stay; a second refresh creates nothing more.
func TestReadACLsAreCopiedRenamedAndNeverWrite(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 1, nil, nil)
	src.add("excluded", 1, nil, nil)
	tgt.add("europe.orders", 1, nil, nil)
	src.acls = []sarama.ResourceAcls{
		topicACLs("orders", sarama.AclPatternLiteral,
			allow("User:alice", sarama.AclOperationRead), allow("User:alice", sarama.AclOperationAll),
			allow("User:alice", sarama.AclOperationWrite), allow("User:bob", sarama.AclOperationDescribe),
			allow("User:bob", sarama.AclOperationAlter), allow("User:bob", sarama.AclOperationDescribeConfigs),
			&sarama.Acl{Principal: "User:eve", Host: "*", Operation: sarama.AclOperationRead, PermissionType: sarama.AclPermissionDeny}),
		topicACLs("ord", sarama.AclPatternPrefixed, allow("User:carol", sarama.AclOperationRead)),
		topicACLs("*", sarama.AclPatternLiteral, allow("User:dave", sarama.AclOperationRead)),
		topicACLs("excluded", sarama.AclPatternLiteral, allow("User:alice", sarama.AclOperationRead)),
	}
	own := topicACLs("europe.orders", sarama.AclPatternLiteral, allow("User:ops", sarama.AclOperationAll))
	tgt.acls = []sarama.ResourceAcls{own}
	core, logs := observer.New(zap.InfoLevel)
	s := newLivingSyncer(t, src, tgt, zap.New(core), func(c *SyncerConfig) {
		c.SyncACLs = true
		c.Name, _ = NewNamer(config.PolicyPrefix, "europe")
	})
	plan, err := s.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Topics) != 1 || fmt.Sprint(plan.Topics[0].ACLs) != "[User:alice from *: ALLOW READ (source ALL, READ) User:bob from *: ALLOW DESCRIBE (source DESCRIBE)]" {
		t.Fatalf("planned %+v", plan.Topics)
	}
	if len(tgt.acls) != 1 {
		t.Fatal("planning created ACLs")
	}
	refresh(t, s)
	refresh(t, s)
	var got []string
	for _, r := range tgt.acls {
		for _, a := range r.Acls {
			got = append(got, fmt.Sprintf("%s %s %s %s %s", r.ResourceName, r.ResourcePatternType.String(), a.Principal, a.Operation.String(), a.PermissionType.String()))
		}
	}
	want := "[europe.orders Literal User:ops All Allow europe.orders Literal User:alice Read Allow europe.orders Literal User:bob Describe Allow]"
	if fmt.Sprint(got) != want {
		t.Fatalf("target ACLs %v, want %s", got, want)
	}
	lines := logs.FilterMessage("synced target topic ACLs from the source").All()
	if len(lines) != 1 || lines[0].ContextMap()["topic"] != "europe.orders" {
		t.Fatalf("ACL diff lines %+v, want one for europe.orders", lines)
	}
}

// TestRefusedACLCreationIsWarnedOnce: a target that does not create the ACLs (sarama does not
// report a refused creation) is found by reading its ACLs back, warned about once, and the
// topic is still mirrored.
func TestRefusedACLCreationIsWarnedOnce(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 1, nil, nil)
	tgt.add("orders", 1, nil, nil)
	src.acls = []sarama.ResourceAcls{topicACLs("orders", sarama.AclPatternLiteral, allow("User:alice", sarama.AclOperationRead))}
	tgt.dropACLs = true
	core, logs := observer.New(zap.InfoLevel)
	s := newLivingSyncer(t, src, tgt, zap.New(core), func(c *SyncerConfig) { c.SyncACLs = true })
	for range 3 {
		names, err := s.Refresh(context.Background())
		if err != nil || len(names) != 1 {
			t.Fatalf("refresh: %v %v, want orders mirrored", names, err)
		}
	}
	w := logs.FilterMessageSnippet("cannot create the source's ACLs").All()
	if len(w) != 1 || logs.FilterMessage("synced target topic ACLs from the source").Len() != 0 {
		t.Fatalf("warnings %+v, want one and no success line", w)
	}
}

// TestACLsOfAThousandTopicsAreCreatedInFewRequests: the source's read ACLs of 1,000 topics reach
// their targets in a few CreateACLs requests, read back in one listing, not a creation and a
// listing per topic; each topic's ACLs are still logged as one line.
func TestACLsOfAThousandTopicsAreCreatedInFewRequests(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	const n = 1000
	for i := range n {
		name := fmt.Sprintf("orders.%04d", i)
		src.add(name, 1, nil, nil)
		tgt.add(name, 1, nil, nil)
		src.acls = append(src.acls, topicACLs(name, sarama.AclPatternLiteral, allow("User:alice", sarama.AclOperationRead)))
	}
	core, logs := observer.New(zap.InfoLevel)
	s := newLivingSyncer(t, src, tgt, zap.New(core), func(c *SyncerConfig) { c.SyncACLs = true })
	if names, err := s.Refresh(context.Background()); err != nil || len(names) != n {
		t.Fatalf("refresh: %d topics, %v", len(names), err)
	}
	if got := logs.FilterMessage("synced target topic ACLs from the source").Len(); got != n {
		t.Fatalf("%d topics' ACLs synced, want %d", got, n)
	}
	// The plan lists the target's ACLs once; the read-back is one more listing.
	if most := ceilDiv(n, topicsPerACLRequest); int64(tgt.createACLRequests) > most || tgt.listACLRequests > 2 {
		t.Fatalf("%d CreateACLs and %d ListAcls requests to the target for %d topics, want at most %d and 2",
			tgt.createACLRequests, tgt.listACLRequests, n, most)
	}
	if names, err := s.Refresh(context.Background()); err != nil || len(names) != n || tgt.createACLRequests > int(ceilDiv(n, topicsPerACLRequest)) {
		t.Fatalf("second refresh: %d topics, %v, %d CreateACLs requests in all: the ACLs created were not found", len(names), err, tgt.createACLRequests)
	}
}
