from tfscachectl.cli.app import main

main()
