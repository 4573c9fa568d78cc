#include "cardvault/cli.h"
const struct cv_cli_optdef cv_cli_scan_opts[] = {{NULL, 0, 0}};
const char cv_cli_scan_usage[] = "usage: cardvault scan\n";
int cv_cli_scan(struct cv_cli *cli)
{
    (void)cli;
    return 2;
}
