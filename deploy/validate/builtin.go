package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// builtinTypes are the Kubernetes kinds the manifests may use, decoded into the real API types.
var builtinTypes = map[string]func() any{
	"apps/v1 Deployment":                func() any { return &appsv1.Deployment{} },
	"v1 Service":                        func() any { return &corev1.Service{} },
	"v1 ConfigMap":                      func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                         func() any { return &corev1.Secret{} },
	"v1 Namespace":                      func() any { return &corev1.Namespace{} },
	"v1 ServiceAccount":                 func() any { return &corev1.ServiceAccount{} },
	"rbac.authorization.k8s.io/v1 Role": func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1 RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"policy/v1 PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1 NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
}

// decodeBuiltin decodes o strictly (unknown fields are errors) into its API type.
func decodeBuiltin(o Object) (any, []string) {
	mk, ok := builtinTypes[o.APIVersion+" "+o.Kind]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(o.Body)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", o, err)}
	}
	v := mk()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", o, err)}
	}
	return v, nil
}
