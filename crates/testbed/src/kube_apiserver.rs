//! kube-apiserver (written next).
