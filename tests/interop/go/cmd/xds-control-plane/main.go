// xds-control-plane is the tests' service mesh control plane: an xDS server (ADS, state of the
// world) on go-control-plane, serving proxyless gRPC clients one API listener with an inline
// route to one EDS cluster, whose endpoints the test sets and changes through stdin.
//
//	xds-control-plane [-port 0]
//
// Prints "LISTENING <port>" once it serves. Each stdin line is a JSON snapshot that replaces
// the one before, for every client (whatever its node id):
//
//	{"listener": "greeter", "cluster": "greeter",
//	 "localities": [{"zone": "a", "weight": 3, "endpoints": ["127.0.0.1:5001", "127.0.0.1:5002"]},
//	                {"zone": "b", "weight": 1, "endpoints": ["127.0.0.1:5003"]}]}
//
// and is answered "SNAPSHOT <version>" once it is served. What clients say back is printed as it
// comes: "ACK <node> <LDS|RDS|CDS|EDS> <version>" when a client accepts a version, "NACK <node>
// <type> <version> <why>" when it rejects one. Versions are unique across restarts, so a client
// that reconnects to a restarted control plane is always sent the new state. A bad line is
// answered "ERROR <why>"; the end of stdin stops the program.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

var port = flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free port)")

// snapshotLine is one stdin line.
type snapshotLine struct {
	Listener   string     `json:"listener"`
	Cluster    string     `json:"cluster"`
	Localities []locality `json:"localities"`
}

type locality struct {
	Zone      string   `json:"zone"`
	Weight    uint32   `json:"weight"`
	Endpoints []string `json:"endpoints"`
}

// everyNode makes one snapshot serve all clients: the tests' clients differ in node id only
// so that their ACKs can be told apart.
type everyNode struct{}

func (everyNode) ID(*core.Node) string { return "all" }

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

// say prints one line to stdout at once.
func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

var shortTypes = map[string]string{
	resource.ListenerType: "LDS",
	resource.RouteType:    "RDS",
	resource.ClusterType:  "CDS",
	resource.EndpointType: "EDS",
}

// acks reports what clients accept and reject. A stream names its node in its first request
// only, so the node is remembered per stream.
type acks struct {
	server.CallbackFuncs
	mu    sync.Mutex
	nodes map[int64]string
}

func (a *acks) OnStreamRequest(stream int64, req *discovery.DiscoveryRequest) error {
	a.mu.Lock()
	if id := req.GetNode().GetId(); id != "" {
		a.nodes[stream] = id
	}
	node := a.nodes[stream]
	a.mu.Unlock()
	if req.GetResponseNonce() == "" {
		return nil // a subscription, not an answer to a response
	}
	typ := shortTypes[req.GetTypeUrl()]
	if typ == "" {
		typ = req.GetTypeUrl()
	}
	if detail := req.GetErrorDetail(); detail != nil {
		say("NACK %s %s %s %s", node, typ, req.GetVersionInfo(), detail.GetMessage())
	} else {
		say("ACK %s %s %s", node, typ, req.GetVersionInfo())
	}
	return nil
}

func (a *acks) OnStreamClosed(stream int64, _ *core.Node) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.nodes, stream)
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// resources builds what a proxyless gRPC client asks for: the API listener (its route inline,
// every path to the cluster), the cluster (endpoints over ADS, round robin) and its endpoints.
func resources(s snapshotLine) (map[resource.Type][]types.Resource, error) {
	if s.Listener == "" || s.Cluster == "" {
		return nil, errors.New(`"listener" and "cluster" are required`)
	}
	manager := &hcm.HttpConnectionManager{
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: s.Listener + "-route",
			VirtualHosts: []*route.VirtualHost{{
				Name:    s.Listener,
				Domains: []string{"*"},
				Routes: []*route.Route{{
					Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: ""}},
					Action: &route.Route_Route{Route: &route.RouteAction{
						ClusterSpecifier: &route.RouteAction_Cluster{Cluster: s.Cluster},
					}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})},
		}},
	}
	lis := &listener.Listener{
		Name:        s.Listener,
		ApiListener: &listener.ApiListener{ApiListener: mustAny(manager)},
	}
	clu := &cluster.Cluster{
		Name:                 s.Cluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
			ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		}},
		LbPolicy: cluster.Cluster_ROUND_ROBIN,
	}
	assignment := &endpoint.ClusterLoadAssignment{ClusterName: s.Cluster}
	for _, l := range s.Localities {
		if l.Weight == 0 {
			return nil, fmt.Errorf("locality %q: a weight of at least 1 is required", l.Zone)
		}
		lbEndpoints := []*endpoint.LbEndpoint{}
		for _, addr := range l.Endpoints {
			host, portText, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("endpoint %q: %v", addr, err)
			}
			p, err := strconv.ParseUint(portText, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("endpoint %q: bad port", addr)
			}
			lbEndpoints = append(lbEndpoints, &endpoint.LbEndpoint{
				HealthStatus: core.HealthStatus_HEALTHY,
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
						Address:       host,
						PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)},
					}}},
				}},
			})
		}
		assignment.Endpoints = append(assignment.Endpoints, &endpoint.LocalityLbEndpoints{
			Locality:            &core.Locality{Region: "test", Zone: l.Zone},
			LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
			LbEndpoints:         lbEndpoints,
		})
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {lis},
		resource.ClusterType:  {clu},
		resource.EndpointType: {assignment},
	}, nil
}

// apply serves the snapshot `line` describes to every client, as `version`.
func apply(ctx context.Context, snapshots cache.SnapshotCache, version string, line []byte) error {
	var s snapshotLine
	if err := json.Unmarshal(line, &s); err != nil {
		return fmt.Errorf("not a snapshot: %v", err)
	}
	res, err := resources(s)
	if err != nil {
		return err
	}
	snap, err := cache.NewSnapshot(version, res)
	if err != nil {
		return err
	}
	if err := snap.Consistent(); err != nil {
		return err
	}
	return snapshots.SetSnapshot(ctx, "all", snap)
}

func main() {
	flag.Parse()
	ctx := context.Background()
	// Not the cache's ADS mode, which holds back a response that lacks a requested resource:
	// a listener the test stops serving is reported gone, as a mesh's control plane reports it.
	snapshots := cache.NewSnapshotCache(false, everyNode{}, nil)
	xds := server.NewServer(ctx, snapshots, &acks{nodes: map[int64]string{}})
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)

	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "xds-control-plane: %v\n", err)
		os.Exit(1)
	}
	go func() {
		if err := grpcServer.Serve(lis); err != nil {
			fmt.Fprintf(os.Stderr, "xds-control-plane: %v\n", err)
			os.Exit(1)
		}
	}()
	say("LISTENING %d", lis.Addr().(*net.TCPAddr).Port)

	// Unique across restarts: a client reconnecting after one reports the version it has.
	epoch := time.Now().UnixNano()
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; lines.Scan(); n++ {
		version := fmt.Sprintf("%d-%d", epoch, n)
		if err := apply(ctx, snapshots, version, lines.Bytes()); err != nil {
			say("ERROR %v", err)
		} else {
			say("SNAPSHOT %s", version)
		}
	}
	grpcServer.Stop()
}
