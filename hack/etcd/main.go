// Command etcd is the upstream etcd server, built from go.etcd.io/etcd/server/v3 at the version
// pinned in hack/versions.env. It is the same entry point as etcd's own main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
