package topics

import (
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// ACL is a source topic ACL as it would be created on the target topic: ALLOW, on the topic's
// target name as a LITERAL resource, for the same principal and host.
//
// Which ACLs are copied follows MirrorMaker 2's MirrorSourceConnector (only LITERAL topic ACLs;
// ALLOW ALL becomes READ; ALLOW WRITE is never copied), narrowed further: only ALLOW READ,
// DESCRIBE and ALL are copied. MirrorMaker 2 also copies DENY entries and every other operation
// (ALTER, DELETE, DESCRIBE_CONFIGS, ...); kmirror does not, because a target topic is a copy that
// its consumers read — granting them more than reading, or carrying over a DENY that could shut
// out kmirror's own principal, is a decision for the target's operator. The wildcard topic "*"
// is never copied (it would grant on every target topic), nor are PREFIXED ACLs (a prefix
// renamed by the replication policy is not the same set of topics). ACLs are only ever added on
// the target, never deleted.
type ACL struct {
	Principal string `json:"principal"`
	Host      string `json:"host"`
	// Operation is READ or DESCRIBE, as created on the target.
	Operation string `json:"operation"`
	// From are the source ACLs' operations it comes from (READ, DESCRIBE, ALL).
	From []string `json:"from"`
}

// String renders the ACL as the plan and the log show it.
func (a ACL) String() string {
	return fmt.Sprintf("%s from %s: ALLOW %s (source %s)", a.Principal, a.Host, a.Operation, strings.Join(a.From, ", "))
}

// aclEntry identifies an ALLOW ACL on one topic.
type aclEntry struct {
	principal, host string
	op              sarama.AclOperation
}

// aclSets are the copyable ACLs of the source's topics and the ALLOW ACLs of the target's, both
// by topic name.
type aclSets struct {
	source map[string][]ACL
	target map[string]map[aclEntry]bool
}

// topicACLFilter matches every ACL on a topic resource.
func topicACLFilter(name *string, pattern sarama.AclResourcePatternType) sarama.AclFilter {
	return sarama.AclFilter{ResourceType: sarama.AclResourceTopic, ResourceName: name, ResourcePatternTypeFilter: pattern,
		Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}
}

// readACLs lists the topic ACLs of both clusters: two requests, whatever the number of topics.
func (s *Syncer) readACLs() (*aclSets, error) {
	src, err := s.source.ListAcls(topicACLFilter(nil, sarama.AclPatternAny))
	if err != nil {
		return nil, fmt.Errorf("describe source topic ACLs (kmirror needs DESCRIBE on the source's cluster resource): %w", err)
	}
	tgt, err := s.target.ListAcls(topicACLFilter(nil, sarama.AclPatternLiteral))
	if err != nil {
		return nil, fmt.Errorf("describe target topic ACLs (kmirror needs DESCRIBE on the target's cluster resource): %w", err)
	}
	sets := &aclSets{source: copyableACLs(src), target: allowed(tgt)}
	return sets, nil
}

// copyableACLs picks the ACLs of src that are copied and turns them into what the target gets,
// deduplicated (READ and ALL for one principal and host become one READ).
func copyableACLs(src []sarama.ResourceAcls) map[string][]ACL {
	byTopic := make(map[string][]ACL)
	for _, r := range src {
		if r.ResourceType != sarama.AclResourceTopic || r.ResourcePatternType != sarama.AclPatternLiteral || r.ResourceName == "*" {
			continue
		}
		for _, a := range r.Acls {
			if a == nil || a.PermissionType != sarama.AclPermissionAllow {
				continue
			}
			var op sarama.AclOperation
			switch a.Operation {
			case sarama.AclOperationRead, sarama.AclOperationAll:
				op = sarama.AclOperationRead
			case sarama.AclOperationDescribe:
				op = sarama.AclOperationDescribe
			default:
				continue // WRITE above all: the target's copies are written by kmirror alone
			}
			acls := byTopic[r.ResourceName]
			from := opName(a.Operation)
			i := slices.IndexFunc(acls, func(x ACL) bool {
				return x.Principal == a.Principal && x.Host == a.Host && x.Operation == opName(op)
			})
			if i < 0 {
				acls = append(acls, ACL{Principal: a.Principal, Host: a.Host, Operation: opName(op), From: []string{from}})
			} else if !slices.Contains(acls[i].From, from) {
				acls[i].From = append(acls[i].From, from)
				slices.Sort(acls[i].From)
			}
			byTopic[r.ResourceName] = acls
		}
	}
	for _, acls := range byTopic {
		slices.SortFunc(acls, func(a, b ACL) int { return strings.Compare(a.String(), b.String()) })
	}
	return byTopic
}

// allowed indexes the LITERAL ALLOW ACLs of tgt by topic.
func allowed(tgt []sarama.ResourceAcls) map[string]map[aclEntry]bool {
	out := make(map[string]map[aclEntry]bool)
	for _, r := range tgt {
		if r.ResourceType != sarama.AclResourceTopic || r.ResourcePatternType != sarama.AclPatternLiteral {
			continue
		}
		for _, a := range r.Acls {
			if a == nil || a.PermissionType != sarama.AclPermissionAllow {
				continue
			}
			if out[r.ResourceName] == nil {
				out[r.ResourceName] = make(map[aclEntry]bool)
			}
			out[r.ResourceName][aclEntry{a.Principal, a.Host, a.Operation}] = true
		}
	}
	return out
}

// missing returns the source topic's copyable ACLs that the target topic lacks.
func (a *aclSets) missing(source, target string) []ACL {
	var out []ACL
	for _, acl := range a.source[source] {
		if !a.target[target][aclEntry{acl.Principal, acl.Host, parseOp(acl.Operation)}] {
			out = append(out, acl)
		}
	}
	return out
}

func opName(op sarama.AclOperation) string { return strings.ToUpper(op.String()) }

func parseOp(name string) sarama.AclOperation {
	if name == "DESCRIBE" {
		return sarama.AclOperationDescribe
	}
	return sarama.AclOperationRead
}

// createACLs adds the plans' ACLs to their target topics, topicsPerACLRequest topics per
// CreateAcls request, and logs each topic's as one line. sarama does not report a refused
// creation, so the target's topic ACLs are read back, in one listing: an ACL still missing is
// warned about once per topic (kmirror needs ALTER on the target's cluster resource) and tried
// again at the next refresh.
func (s *Syncer) createACLs(plans []TopicPlan) {
	if len(plans) == 0 {
		return
	}
	lines := make(map[string][]string, len(plans))
	resources := make([]*sarama.ResourceAcls, 0, len(plans))
	for _, p := range plans {
		r := &sarama.ResourceAcls{Resource: sarama.Resource{
			ResourceType: sarama.AclResourceTopic, ResourceName: p.Target, ResourcePatternType: sarama.AclPatternLiteral,
		}}
		for _, a := range p.ACLs {
			r.Acls = append(r.Acls, &sarama.Acl{Principal: a.Principal, Host: a.Host, Operation: parseOp(a.Operation), PermissionType: sarama.AclPermissionAllow})
			lines[p.Target] = append(lines[p.Target], a.String())
		}
		resources = append(resources, r)
	}
	errs := make(map[string]error)
	for chunk := range slices.Chunk(resources, topicsPerACLRequest) {
		if err := s.target.CreateACLs(chunk); err != nil {
			for _, r := range chunk {
				errs[r.ResourceName] = err
			}
		}
	}
	var have map[string]map[aclEntry]bool
	got, listErr := s.target.ListAcls(topicACLFilter(nil, sarama.AclPatternLiteral))
	if listErr == nil {
		have = allowed(got)
	}
	for _, p := range plans {
		err := errs[p.Target]
		if err == nil && listErr != nil {
			err = listErr
		}
		if err == nil {
			var absent []string
			for _, a := range p.ACLs {
				if !have[p.Target][aclEntry{a.Principal, a.Host, parseOp(a.Operation)}] {
					absent = append(absent, a.String())
				}
			}
			if len(absent) > 0 {
				err = fmt.Errorf("the target did not create %d of them: %s", len(absent), strings.Join(absent, "; "))
			}
		}
		if err != nil {
			s.warnOnce("acls:"+p.Target, "cannot create the source's ACLs on the target topic; trying again every refresh "+
				"(kmirror needs ALTER on the target's cluster resource)", zap.String("topic", p.Target), zap.Strings("acls", lines[p.Target]), zap.Error(err))
			continue
		}
		s.cfg.Log.Info("synced target topic ACLs from the source", zap.String("topic", p.Target), zap.Strings("added", lines[p.Target]))
		if s.cfg.Events.ACLsCreated != nil {
			s.cfg.Events.ACLsCreated(len(p.ACLs))
		}
	}
}

// topicsPerACLRequest is how many topics' ACLs one CreateAcls request carries.
const topicsPerACLRequest = 500
