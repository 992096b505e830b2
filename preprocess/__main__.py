from preprocess.cli import main

main()
