module regent.local/client

go 1.19
