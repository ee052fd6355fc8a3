package cluster

import (
	"errors"
	"net"
)

// AdvertiseAddr turns a listen address into one peers can dial: a wildcard
// host (":7000", "0.0.0.0:7000") becomes this machine's first private
// address, the one a node in a data center shares with its peers.
func AdvertiseAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	ip, err := privateIP()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

func privateIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var fallback net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil && ipn.IP.IsPrivate() {
			return ipn.IP, nil
		}
		if fallback == nil {
			fallback = ipn.IP
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, errors.New("cluster: no address to advertise; give --raft-addr an explicit host")
}
